package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/selfcert"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/server"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestSelfManagedTLS runs a server in self-managed mode against a webhook
// configuration registered without a caBundle: cert-controller generates
// the CA and certificate into a Secret, the server writes the caBundle and
// serves the certificate, and the API server then calls it over TLS and the
// run is converted. Then the Secret is deleted.
func TestSelfManagedTLS(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const labelKey = "selfmanaged.oci-transport.tekton.dev/enabled"
	port, err := freePort()
	require.NoError(t, err)
	name := "tekton-oci-transport-selfmanaged-" + e.ns
	mwc := registration.MutatingWebhookConfiguration(registration.Values{
		Name: name, LabelKey: labelKey, ResolutionTimeout: resolutionTimeout,
		// "localhost" is one of the certificate's names (service "localhost").
		URL: fmt.Sprintf("https://localhost:%d%s", port, registration.Path),
	})
	require.NoError(t, e.c.Create(ctx, mwc))
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), mwc) })

	go func() {
		err := server.Run(ctx, server.Config{
			Rest: suite.cfg, Host: "127.0.0.1", Port: port, CertDir: t.TempDir(),
			MetricsAddr: "0", HealthAddr: "0",
			LabelKey: labelKey, Options: options, ResolutionTimeout: resolutionTimeout,
			SelfManaged: &selfcert.Config{
				SecretNamespace: e.ns, SecretName: "webhook-tls",
				ServiceName: "localhost", ServiceNamespace: e.ns,
				WebhookConfiguration: name, CheckInterval: time.Second,
				Propagation: time.Second, Retire: 3 * time.Second,
			},
			Log: logr.Discard(),
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("self-managed server: %v", err)
		}
	}()

	// The caBundle appears, and the server presents a certificate it verifies.
	var ca []byte
	require.Eventually(t, func() bool {
		got := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if e.c.Get(ctx, client.ObjectKey{Name: name}, got) != nil {
			return false
		}
		ca = got.Webhooks[0].ClientConfig.CABundle
		return len(ca) > 0 && string(got.Webhooks[1].ClientConfig.CABundle) == string(ca)
	}, 20*time.Second, 100*time.Millisecond)
	secret := &corev1.Secret{}
	require.NoError(t, e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "webhook-tls"}, secret))
	require.Equal(t, ca, secret.Data["ca.crt"])
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca))
	require.Eventually(t, func() bool {
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}, 20*time.Second, 100*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // the API server picks up configuration changes asynchronously

	run := e.load(t, "inline-run.yaml").(*v1.PipelineRun)
	run.Labels = map[string]string{labelKey: "true"}
	require.NoError(t, e.c.Create(ctx, run))
	requireConverted(t, e.get(t, run))

	// A deleted Secret: created again and filled with a new CA, which is
	// published beside the CA in use (never instead of it), served after
	// Propagation, and the old CA retired after Retire; no restart.
	require.NoError(t, e.c.Delete(ctx, secret))
	var both []byte
	require.Eventually(t, func() bool {
		got := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if e.c.Get(ctx, client.ObjectKey{Name: name}, got) != nil {
			return false
		}
		both = got.Webhooks[0].ClientConfig.CABundle
		return string(both) != string(ca)
	}, 20*time.Second, 20*time.Millisecond)
	require.Contains(t, string(both), string(ca), "the CA in use stays in the caBundle")
	require.NoError(t, e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "webhook-tls"}, secret))
	require.Contains(t, string(both), string(secret.Data["ca.crt"]), "beside the new CA")
	fresh := x509.NewCertPool()
	require.True(t, fresh.AppendCertsFromPEM(secret.Data["ca.crt"]))
	require.Eventually(t, func() bool {
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{RootCAs: fresh, ServerName: "localhost"})
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}, 20*time.Second, 100*time.Millisecond, "the server reloads the new certificate from its directory")
	again := e.load(t, "inline-run.yaml").(*v1.PipelineRun)
	again.Labels = map[string]string{labelKey: "true"}
	require.NoError(t, e.c.Create(ctx, again))
	requireConverted(t, e.get(t, again))
	require.Eventually(t, func() bool {
		got := &admissionregistrationv1.MutatingWebhookConfiguration{}
		return e.c.Get(ctx, client.ObjectKey{Name: name}, got) == nil &&
			string(got.Webhooks[0].ClientConfig.CABundle) == string(secret.Data["ca.crt"])
	}, 20*time.Second, 100*time.Millisecond, "the old CA is retired")
}
