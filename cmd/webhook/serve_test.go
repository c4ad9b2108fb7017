package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"sigs.k8s.io/yaml"
)

func TestServePrintsTheRegistrationValues(t *testing.T) {
	var out, errOut bytes.Buffer
	code := serve([]string{"--print-webhook-configuration", "--namespace=tot", "--service-name=hook",
		"--resolution-timeout=5s", "--label-key=example.com/on", "--failure-policy=Fail"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	var got admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, yaml.Unmarshal(out.Bytes(), &got))
	want := registration.MutatingWebhookConfiguration(registration.Values{
		ServiceName: "hook", ServiceNamespace: "tot", ServicePort: 443, LabelKey: "example.com/on",
		ResolutionTimeout: 5 * time.Second, FailurePolicy: admissionregistrationv1.Fail,
	})
	require.Equal(t, *want, got)
	require.Equal(t, int32(7), *got.Webhooks[0].TimeoutSeconds)
}

func TestServeRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-mode=magic"},
		{"--tls-mode=self-managed", "--namespace="},
		{"--resolution-timeout=45s"},
		{"--resolution-pickup-timeout=0s"},
		{"--resolution-timeout=2s", "--resolution-pickup-timeout=3s"}, // picked up after the deadline: never
		{"--resolvers-namespace="},
		{"--failure-policy=Sometimes"},
		{"--registry="},
		{"--registry=http://zot:5000"}, // a scheme: every admission would fail open
		{"--registry=zot:5000/path"},
		{"--step-image="},
		{"--step-command="},
		{"typo"}, // positional arguments are no flags
		{"--results-budget=strict"},
		{"--mode=enforce"},
		{"--token-service-address=:9444", "--namespace=tot", "--token-ttl=2h"},
		{"--token-service-address=:9444", "--namespace="}, // where its Secret lives
		{"--token-service-address=:9444", "--namespace=tot", "--token-audience="},
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, 2, serve(args, &out, &errOut), strings.Join(args, " "))
		require.NotEmpty(t, errOut.String())
	}
}

// A subcommand typo must not start a server; version prints the version.
func TestUnknownSubcommandIsAUsageError(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"nosuchcommand"}, strings.NewReader(""), &out, &errOut))
	require.Contains(t, errOut.String(), `unknown command "nosuchcommand"`)
	out.Reset()
	require.Equal(t, 0, run([]string{"version"}, strings.NewReader(""), &out, &errOut))
	require.Equal(t, version+"\n", out.String())
}

// serveOptions parses serve's flags and returns the rewrite's options as
// serve would run with them.
func serveOptions(t *testing.T, args ...string) (transform.Options, error) {
	t.Helper()
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	require.NoError(t, fs.Parse(args))
	return f.transformOptions()
}

// While serve runs the token service, the injected steps get a token for
// its audience (--token-audience: the chart sets it once); without it, for
// --registry-token-audience only, which convert shares.
func TestServeRegistryTokenAudience(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"--token-service-address=0", "--token-audience=ignored"}, ""},
		{[]string{"--token-service-address=:9444"}, registryauth.DefaultAudience},
		{[]string{"--token-service-address=:9444", "--token-audience=example.com/registry"}, "example.com/registry"},
		{[]string{"--token-service-address=:9444", "--token-audience=example.com/registry", "--registry-token-audience=example.com/registry"}, "example.com/registry"},
		// a token service run elsewhere
		{[]string{"--registry-token-audience=example.com/registry"}, "example.com/registry"},
	} {
		o, err := serveOptions(t, tc.args...)
		require.NoError(t, err, tc.args)
		require.Equal(t, tc.want, o.RegistryTokenAudience, tc.args)
	}

	// A second audience the token service would refuse: a usage error.
	args := []string{"--token-service-address=:9444", "--namespace=tot", "--token-audience=a.example/registry", "--registry-token-audience=b.example/registry"}
	_, err := serveOptions(t, args...)
	require.ErrorContains(t, err, `--registry-token-audience "b.example/registry" differs from --token-audience "a.example/registry"`)
	var out, errOut bytes.Buffer
	require.Equal(t, 2, serve(args, &out, &errOut))
	require.Contains(t, errOut.String(), "would refuse the steps' tokens")
}

// `convert --registry-token-audience` gives the options of a webhook that
// runs the token service (the chart's default), so it shows what that
// webhook admits: a token volume and --registry-token-file in the steps.
func TestConvertMatchesTheTokenService(t *testing.T) {
	shared := []string{"--registry=zot.tot.svc:5000", "--step-image=step:1", "--results-budget=unchanged"}
	served, err := serveOptions(t, append([]string{"--token-service-address=:9444", "--namespace=tot"}, shared...)...)
	require.NoError(t, err)
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	converted := transformFlags(fs)
	require.NoError(t, fs.Parse(append([]string{"--registry-token-audience=" + registryauth.DefaultAudience}, shared...)))
	require.Equal(t, served, converted())
	require.Equal(t, transform.ResultsBudgetUnchanged, served.ResultsBudget)

	var out, errOut bytes.Buffer
	code := runConvert([]string{"--registry-token-audience=" + registryauth.DefaultAudience, "-f", "../../transform/testdata/linear/input.yaml"},
		strings.NewReader(""), &out, &errOut)
	require.Equal(t, exitConverted, code, errOut.String())
	require.Contains(t, out.String(), "audience: "+registryauth.DefaultAudience)
	require.Contains(t, out.String(), "--registry-token-file")

	out.Reset()
	code = runConvert([]string{"-f", "../../transform/testdata/linear/input.yaml"}, strings.NewReader(""), &out, &errOut)
	require.Equal(t, exitConverted, code, errOut.String())
	require.NotContains(t, out.String(), "--registry-token-file", "no audience, no token")
}

// --results-budget: warn (the default) or unchanged; anything else is a
// usage error of both serve and convert, before anything runs.
func TestResultsBudgetFlag(t *testing.T) {
	o, err := serveOptions(t)
	require.NoError(t, err)
	require.Equal(t, transform.ResultsBudgetWarn, o.ResultsBudget)
	o, err = serveOptions(t, "--results-budget=unchanged")
	require.NoError(t, err)
	require.Equal(t, transform.ResultsBudgetUnchanged, o.ResultsBudget)

	var out, errOut bytes.Buffer
	require.Equal(t, 2, serve([]string{"--results-budget=deny"}, &out, &errOut))
	require.Contains(t, errOut.String(), `invalid value "deny" for flag -results-budget: must be one of warn, unchanged`)
	errOut.Reset()
	require.Equal(t, exitUsage, runConvert([]string{"--results-budget=", "-f", "x.yaml"}, strings.NewReader(""), &out, &errOut))
	require.Contains(t, errOut.String(), "must be one of warn, unchanged")
}

func TestTokenKeyUsage(t *testing.T) {
	noCluster := func(string, string) (corev1client.SecretInterface, error) {
		t.Fatal("a usage error must not reach the cluster")
		return nil, nil
	}
	for args, want := range map[string]string{
		"":                      "which phase? stage, promote or retire",
		"rotate":                `unknown phase "rotate"`,
		"--namespace=x":         "which phase?",
		"stage extra":           `unexpected arguments ["extra"]`,
		"promote --no-such=1":   "flag provided but not defined: -no-such",
		"retire --namespace":    "flag needs an argument",
		"STAGE --namespace=tot": `unknown phase "STAGE"`,
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, 2, tokenKey(strings.Fields(args), &out, &errOut, noCluster), args)
		require.Contains(t, errOut.String(), want, args)
		require.Empty(t, out.String(), args)
	}
	// Through the command's dispatch too.
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"token-key", "rotate"}, strings.NewReader(""), &out, &errOut))
	require.Contains(t, errOut.String(), "usage: webhook token-key stage|promote|retire")
}

// The three phases against a Secret the token service created: each says
// what to restart next, and an out-of-order phase fails without a change.
func TestTokenKeyRotates(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	secrets := cs.CoreV1().Secrets("tot")
	keys := &registryauth.KeyStore{Secrets: secrets, Name: "tot-registry-token", Issuer: registryauth.DefaultIssuer, Log: logr.Discard()}
	require.NoError(t, keys.Load(ctx))
	first := keys.Signing().KID
	var gotNamespace string
	clusterOf := func(kubeconfig, namespace string) (corev1client.SecretInterface, error) {
		require.Equal(t, "/kube/config", kubeconfig)
		gotNamespace = namespace
		return secrets, nil
	}
	phase := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := tokenKey(append(args, "--kubeconfig=/kube/config", "--namespace=tot", "--token-signing-secret=tot-registry-token"), &out, &errOut, clusterOf)
		return code, out.String(), errOut.String()
	}
	bundle := func() []string {
		s, err := secrets.Get(ctx, "tot-registry-token", metav1.GetOptions{})
		require.NoError(t, err)
		return bundleKIDs(s.Data[registryauth.SecretBundle])
	}

	code, _, errOut := phase("promote")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no staged key: stage one first")
	require.Equal(t, []string{first}, bundle())

	code, out, errOut := phase("stage")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "tot", gotNamespace)
	staged := bundle()
	require.Len(t, staged, 2)
	require.Equal(t, first, staged[0], "the current key stays first: zot trusts only that one")
	require.Contains(t, out, "staged key: true")
	require.Contains(t, out, "restart the registries that read every certificate")

	code, _, errOut = phase("stage")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "a key is staged already")

	code, out, errOut = phase("promote")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, []string{staged[1], first}, bundle())
	require.Contains(t, out, "restart zot (kubectl -n tot rollout restart deployment/<fullname>-zot)")

	code, out, errOut = phase("retire")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, []string{staged[1]}, bundle())
	require.Contains(t, out, "staged key: false")
	require.NoError(t, keys.Load(ctx))
	require.Equal(t, staged[1], keys.Signing().KID, "the service signs with the promoted key")
}
