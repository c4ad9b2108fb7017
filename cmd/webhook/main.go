// Command webhook is the tekton-oci-transport admission webhook server. It
// also converts PipelineRun files offline:
//
//	webhook [serve] [flags]               serve admission (the default)
//	webhook convert -f run.yaml [-f ...]  print the converted run; exit 0 converted,
//	                                      3 left unchanged, 1 bad input
//	webhook report [-n ns | -A | -f files] [-o json]
//	                                      what the webhook would do with every run that
//	                                      binds a volumeClaimTemplate, and the PVC storage
//	                                      conversion would stop requesting (docs/migration.md)
//	webhook token-key stage|promote|retire [flags]
//	                                      one phase of a rotation of the registry
//	                                      token signing key (docs/security.md)
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "convert":
		return runConvert(args, stdin, stdout, stderr)
	case "report":
		return runReport(args, stdin, stdout, stderr)
	case "token-key":
		return tokenKey(args, stdout, stderr, secretsFromKubeconfig)
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	default:
		// a typo must not start a server
		fmt.Fprintf(stderr, "webhook: unknown command %q: want serve (the default), convert, report, token-key or version\n", cmd)
		return 2
	}
}

// secretsFromKubeconfig is the Secrets API of namespace, as the kubeconfig's
// user (in a cluster: the pod's ServiceAccount).
func secretsFromKubeconfig(kubeconfig, namespace string) (corev1client.SecretInterface, error) {
	rc, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cc, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return cc.Secrets(namespace), nil
}

// tokenKeyNext is what an operator does after each phase (docs/security.md, "Rotating
// the token signing key").
var tokenKeyNext = map[registryauth.Phase]string{
	registryauth.Stage: "The new key's certificate is in bundle.pem, second; the current key still signs.\n" +
		"Next: restart the registries that read every certificate of the bundle (CNCF Distribution) so they trust it\n" +
		"(zot trusts only the first certificate: it needs no restart now), then run `webhook token-key promote`.",
	registryauth.Promote: "The staged key signs now (each webhook replica switches within %s); the previous certificate stays second.\n" +
		"Next: once the replicas switched, restart zot (kubectl -n %s rollout restart deployment/<fullname>-zot): it trusts\n" +
		"only the first certificate and refuses the new tokens until it restarts (with emptyDir storage a restart loses its\n" +
		"artifacts: rotate when no run is in flight). Distribution accepts the tokens of both keys. After the token TTL\n" +
		"(--token-ttl, 5m by default), run `webhook token-key retire`.",
	registryauth.Retire: "Only the signing key's certificate (and a staged one's) is left in bundle.pem.\n" +
		"Next: restart the registries that read every certificate (CNCF Distribution) so they stop trusting the retired key;\n" +
		"zot needs nothing.",
}

// tokenKey runs one phase of a signing key rotation on the token service's
// Secret (registryauth.Rotate) and says what the operator does next.
func tokenKey(args []string, stdout, stderr io.Writer, secrets func(kubeconfig, namespace string) (corev1client.SecretInterface, error)) int {
	fs := flag.NewFlagSet("webhook token-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else in-cluster config); its user needs get and update on the Secret")
	namespace := fs.String("namespace", "tekton-oci-transport", "namespace of the webhook (the chart's release namespace)")
	secret := fs.String("token-signing-secret", registryauth.DefaultSecretName, "the token service's Secret, as its --token-signing-secret (the chart's <fullname>-registry-token)")
	issuer := fs.String("token-issuer", registryauth.DefaultIssuer, "as the token service's --token-issuer (names the new key's certificate)")
	fs.Usage = usage(fs, stderr,
		"usage: webhook token-key stage|promote|retire [flags]",
		"One phase of a rotation of the registry token signing key, in this order, with the registries",
		"restarted between them as each phase prints (docs/security.md):",
		"  stage    add a new key's certificate to the bundle the registries trust; it signs nothing yet",
		"  promote  sign with the staged key; the previous certificate stays trusted, second",
		"  retire   drop the previous certificates, once the tokens they signed have expired",
	)
	var phase registryauth.Phase
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		phase, args = registryauth.Phase(args[0]), args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, known := tokenKeyNext[phase]; !known || fs.NArg() > 0 {
		switch {
		case phase == "":
			fmt.Fprintln(stderr, "token-key: which phase? stage, promote or retire")
		case !known:
			fmt.Fprintf(stderr, "token-key: unknown phase %q: want stage, promote or retire\n", phase)
		default:
			fmt.Fprintf(stderr, "token-key: unexpected arguments %q\n", fs.Args())
		}
		fs.Usage()
		return 2
	}
	sec, err := secrets(*kubeconfig, *namespace)
	if err != nil {
		fmt.Fprintln(stderr, "token-key:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := registryauth.Rotate(ctx, sec, *secret, *issuer, phase, time.Now()); err != nil {
		fmt.Fprintf(stderr, "token-key %s: Secret %s/%s: %v\n", phase, *namespace, *secret, err)
		return 1
	}
	fmt.Fprintf(stdout, "token-key %s: Secret %s/%s updated.\n", phase, *namespace, *secret)
	if s, err := sec.Get(ctx, *secret, metav1.GetOptions{}); err == nil {
		fmt.Fprintf(stdout, "bundle.pem (key ids, the signing key's first): %s; staged key: %t\n",
			strings.Join(bundleKIDs(s.Data[registryauth.SecretBundle]), ", "), len(s.Data[registryauth.SecretNextKey]) > 0)
	}
	msg := tokenKeyNext[phase]
	if phase == registryauth.Promote {
		msg = fmt.Sprintf(msg, registryauth.DefaultReloadInterval, *namespace)
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

// bundleKIDs are the key ids (the tokens' kid) of a PEM bundle's
// certificates, in order.
func bundleKIDs(raw []byte) []string {
	var kids []string
	for {
		var b *pem.Block
		if b, raw = pem.Decode(raw); b == nil {
			return kids
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			kids = append(kids, registryauth.Thumbprint(c.PublicKey))
		}
	}
}
