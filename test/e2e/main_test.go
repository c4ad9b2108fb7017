// Package e2e tests the webhook against a real kube-apiserver and etcd
// started by controller-runtime's envtest (KUBEBUILDER_ASSETS, built by
// `hack/tools.sh envtest`), with Tekton's own CRDs and the webhook
// configuration from webhook/registration served over TLS.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve/resolvetest"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/server"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

const (
	// resolutionTimeout is short so the timeout case stays quick; the
	// webhook timeout derived from it still leaves the margin.
	resolutionTimeout = 2 * time.Second
	// strictLabel opts runs into the second, strict server.
	strictLabel = "strict.oci-transport.tekton.dev/enabled"
)

var options = transform.Options{
	Registry:         "registry.e2e:5000",
	RepositoryPrefix: "tekton-oci-transport",
	PlainHTTP:        true,
	StepImage:        "oci-transport-step:e2e",
	StepCommand:      []string{"/usr/local/bin/oci-transport-step"},
}

// suite is the environment every test shares (one control plane per package).
var suite struct {
	skip       string
	env        *envtest.Environment
	cfg        *rest.Config
	scheme     *runtime.Scheme
	client     client.Client
	resolver   *resolvetest.Resolver
	healthAddr string
	startup    time.Duration
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	start := time.Now()
	ctrllog.SetLogger(logr.Discard())
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		msg := "KUBEBUILDER_ASSETS is not set: the e2e tests need kube-apiserver and etcd; run `make test`, or set KUBEBUILDER_ASSETS=$(hack/tools.sh envtest)"
		if testenv.InCI() {
			fmt.Fprintln(os.Stderr, "FAIL:", msg)
			return 1
		}
		suite.skip = msg
		return m.Run()
	}
	port, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	host := "127.0.0.1"
	url := func(p int) string { return fmt.Sprintf("https://%s:%d%s", host, p, registration.Path) }
	strictPort, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	crdObjects, err := loadCRDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	suite.env = &envtest.Environment{
		CRDs:                  crdObjects,
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			LocalServingHost: host,
			LocalServingPort: port,
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{
				registration.MutatingWebhookConfiguration(registration.Values{URL: url(port), ResolutionTimeout: resolutionTimeout}),
				registration.MutatingWebhookConfiguration(registration.Values{
					Name: "tekton-oci-transport-strict", URL: url(strictPort), LabelKey: strictLabel, ResolutionTimeout: resolutionTimeout,
				}),
			},
		},
	}
	suite.cfg, err = suite.env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: starting envtest:", err)
		return 1
	}
	defer func() {
		if err := suite.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	suite.startup = time.Since(start)
	fmt.Printf("e2e: control plane, CRDs and webhook configuration up in %s\n", suite.startup.Round(time.Millisecond))

	suite.scheme, err = server.Scheme()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	suite.client, err = client.New(suite.cfg, client.Options{Scheme: suite.scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	hp, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	suite.healthAddr = net.JoinHostPort(host, strconv.Itoa(hp))
	certDir := suite.env.WebhookInstallOptions.LocalServingCertDir
	serve := func(port int, labelKey, health string, strict bool) {
		err := server.Run(ctx, server.Config{
			Rest: suite.cfg, Host: host, Port: port, CertDir: certDir,
			MetricsAddr: "0", HealthAddr: health,
			LabelKey: labelKey, Strict: strict, Options: options, ResolutionTimeout: resolutionTimeout,
			Log: logr.Discard(),
		})
		if err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "webhook server stopped:", err)
		}
	}
	go serve(port, "", suite.healthAddr, false)
	go serve(strictPort, strictLabel, "0", true)

	answers, err := resolvetest.Load("testdata/resolutions.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	suite.resolver = &resolvetest.Resolver{Client: suite.client, Answers: answers}
	go suite.resolver.Run(ctx, 20*time.Millisecond)

	if err := waitReady(ctx, "http://"+suite.healthAddr+"/readyz", 60*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	if err := waitTLS(net.JoinHostPort(host, strconv.Itoa(strictPort)), 30*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	fmt.Printf("e2e: webhook ready %s after start\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	fmt.Printf("e2e: suite took %s\n", time.Since(start).Round(time.Millisecond))
	return code
}

// futureField is a PipelineRun spec field that the CRD knows and our Go
// types do not: what a newer Tekton on the cluster looks like to the webhook.
const futureField = "futureField"

// loadCRDs reads Tekton's CRDs (testenv.TektonCRDs) and adds futureField
// to the PipelineRun schema.
func loadCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crds, err := testenv.TektonCRDs()
	if err != nil {
		return nil, err
	}
	for _, crd := range crds {
		if crd.Name == "pipelineruns.tekton.dev" {
			for _, v := range crd.Spec.Versions {
				spec := v.Schema.OpenAPIV3Schema.Properties["spec"]
				spec.Properties[futureField] = apiextensionsv1.JSONSchemaProps{Type: "string"}
				v.Schema.OpenAPIV3Schema.Properties["spec"] = spec
			}
		}
	}
	return crds, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", url, timeout)
}

func waitTLS(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening after %s", addr, timeout)
}

// need skips when the control plane is not available (never under CI,
// where TestMain fails instead).
func need(t *testing.T) {
	t.Helper()
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
}
