// Package chart tests the Helm chart in charts/tekton-oci-transport with the
// real helm (HELM_BIN, built from the Go module proxy by `hack/tools.sh helm`)
// and a real kube-apiserver (KUBEBUILDER_ASSETS, `hack/tools.sh envtest`):
// lint, golden renders of every supported shape, the values schema, the zot
// configuration against zot's keys, the webhook configuration against the
// webhook's own, the plain manifests in deploy/, and a server-side dry-run of
// everything. `make test` provides both binaries; without them the tests skip,
// and under CI they fail.
//
//	go test ./test/chart -update   # rewrite testdata/golden and deploy/manifests
package chart

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "../../charts/tekton-oci-transport"
	repoRoot = "../.."
	// The default install: release and namespace both named after the chart,
	// which gives the names the webhook's flag defaults assume.
	defaultRelease   = "tekton-oci-transport"
	defaultNamespace = "tekton-oci-transport"
	// manifestsFile is the plain-manifest render for `kubectl apply` users.
	manifestsFile = "deploy/manifests/tekton-oci-transport.yaml"
)

// variant is one supported shape of the chart, rendered into
// testdata/golden/<name>.yaml from testdata/values/<name>.yaml.
type variant struct {
	name, release, namespace string
	zot, certManager         bool
	// auth is registry.auth.mode: token, htpasswd or none.
	auth string
}

// The registry.auth.mode values.
const (
	authToken    = "token"
	authHtpasswd = "htpasswd"
	authNone     = "none"
)

// variants are the shapes the goldens and the dry-run cover.
var variants = []variant{
	{name: "defaults", release: defaultRelease, namespace: defaultNamespace, zot: true, auth: authToken},
	{name: "cert-manager", release: defaultRelease, namespace: defaultNamespace, zot: true, certManager: true, auth: authToken},
	// Self-managed TLS spelled out, under another release name and namespace
	// (names derived from the release, e.g. in RBAC resourceNames and the
	// token realm).
	{name: "self-managed", release: "ci", namespace: "tekton-ci", zot: true, auth: authToken},
	{name: "external-registry", release: defaultRelease, namespace: defaultNamespace, auth: authHtpasswd},
	// An existing registry trusting this release's token service, over TLS.
	{name: "external-token", release: defaultRelease, namespace: defaultNamespace, auth: authToken},
	{name: "htpasswd", release: defaultRelease, namespace: defaultNamespace, zot: true, auth: authHtpasswd},
	{name: "no-auth", release: defaultRelease, namespace: defaultNamespace, zot: true, auth: authNone},
	{name: "no-networkpolicy", release: defaultRelease, namespace: defaultNamespace, zot: true, auth: authToken},
	{name: "zot-pvc", release: defaultRelease, namespace: defaultNamespace, zot: true, auth: authToken},
	// zot on an S3-compatible bucket, one pod and zot's two-member
	// scale-out cluster (a StatefulSet); test/s3 runs that config for real.
	{name: "zot-s3", release: defaultRelease, namespace: defaultNamespace, zot: true, auth: authToken},
	{name: "zot-s3-cluster", release: defaultRelease, namespace: defaultNamespace, zot: true, auth: authToken},
}

// requireEnv returns the environment variable, or skips the test with a
// clear message (fails under CI, where nothing may be skipped silently).
var requireEnv = testenv.Require

// helmEnv keeps helm away from the user's configuration and caches.
var helmHome string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "chart-test-helm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmHome = dir
	code := m.Run()
	stopAPIServer()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// helm runs HELM_BIN with args and returns stdout; a non-zero exit returns
// an error that carries stderr.
func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := requireEnv(t, "HELM_BIN", "the chart tests run the real helm")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
		"KUBECONFIG="+filepath.Join(helmHome, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// render runs `helm template` for a variant.
func render(t testing.TB, v variant, extra ...string) string {
	t.Helper()
	args := append([]string{"template", v.release, chartDir, "--namespace", v.namespace,
		"-f", filepath.Join("testdata", "values", v.name+".yaml")}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decode splits a multi-document YAML stream into objects (empty documents
// dropped).
func decode(t testing.TB, stream string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// find returns the one object of kind and name.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	var have []string
	for _, o := range objs {
		have = append(have, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(have)
	t.Fatalf("no %s %q among %v", kind, name, have)
	return nil
}

// zotPodTemplate returns the pod template of zot's workload: a Deployment,
// or a StatefulSet when zot runs as a scale-out cluster (zot.replicas > 1).
func zotPodTemplate(t testing.TB, objs []*unstructured.Unstructured, v variant) corev1.PodTemplateSpec {
	t.Helper()
	for _, o := range objs {
		if o.GetName() != zotName(v) {
			continue
		}
		switch o.GetKind() {
		case "Deployment":
			d := &appsv1.Deployment{}
			into(t, o, d)
			return d.Spec.Template
		case "StatefulSet":
			s := &appsv1.StatefulSet{}
			into(t, o, s)
			return s.Spec.Template
		}
	}
	t.Fatalf("no Deployment or StatefulSet %q", zotName(v))
	return corev1.PodTemplateSpec{}
}

// into converts an unstructured object into a typed one.
func into(t testing.TB, o *unstructured.Unstructured, out any) {
	t.Helper()
	b, err := yaml.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%s/%s: %v", o.GetKind(), o.GetName(), err)
	}
}
