package selfcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func newClient(t *testing.T, objs ...client.Object) client.Client {
	s := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(s))
	require.NoError(t, admissionregistrationv1.AddToScheme(s))
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

func TestEnsureSharesOneCertificateAndPatchesOnlyItsConfiguration(t *testing.T) {
	ours := registration.MutatingWebhookConfiguration(registration.Values{ServiceName: "svc", ServiceNamespace: "ns"})
	other := registration.MutatingWebhookConfiguration(registration.Values{Name: "someone-else"})
	c := newClient(t, ours, other)
	cfg := func(dir string) *Config {
		return &Config{SecretNamespace: "ns", SecretName: "tls", ServiceName: "svc", ServiceNamespace: "ns",
			WebhookConfiguration: registration.DefaultName, Client: c, CertDir: dir, Log: testr.New(t)}
	}
	a, b := t.TempDir(), t.TempDir()
	ctx := context.Background()
	require.NoError(t, cfg(a).Ensure(ctx))
	require.NoError(t, cfg(b).Ensure(ctx), "a second replica reads the same secret")

	certA, err := os.ReadFile(filepath.Join(a, "tls.crt"))
	require.NoError(t, err)
	certB, err := os.ReadFile(filepath.Join(b, "tls.crt"))
	require.NoError(t, err)
	require.Equal(t, certA, certB)

	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	require.NoError(t, c.Get(ctx, types.NamespacedName{Name: registration.DefaultName}, mwc))
	pool := x509.NewCertPool()
	for _, w := range mwc.Webhooks {
		require.True(t, pool.AppendCertsFromPEM(w.ClientConfig.CABundle))
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(a, "tls.crt"), filepath.Join(a, "tls.key"))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "svc.ns.svc", Roots: pool})
	require.NoError(t, err)

	require.NoError(t, c.Get(ctx, types.NamespacedName{Name: "someone-else"}, mwc))
	for _, w := range mwc.Webhooks {
		require.Empty(t, w.ClientConfig.CABundle, "another configuration is never touched")
	}
}

func TestRenewKeepsOldCAInBundle(t *testing.T) {
	c := newClient(t, registration.MutatingWebhookConfiguration(registration.Values{}))
	cfg := &Config{SecretNamespace: "ns", SecretName: "tls", ServiceName: "svc", ServiceNamespace: "ns",
		WebhookConfiguration: registration.DefaultName, Client: c, CertDir: t.TempDir(), Log: testr.New(t),
		Validity: time.Hour}
	ctx := context.Background()
	require.NoError(t, cfg.Ensure(ctx))
	s := &corev1.Secret{}
	require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "tls"}, s))
	oldCA := s.Data[KeyCACert]
	// Pretend most of the validity is gone.
	cfg.Validity = 3 * time.Hour
	s.Data[KeyCert] = nil
	require.NoError(t, c.Update(ctx, s))
	require.NoError(t, cfg.Ensure(ctx))
	require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: "ns", Name: "tls"}, s))
	require.Contains(t, string(s.Data[KeyCACert]), string(oldCA))
	require.NotEqual(t, oldCA, s.Data[KeyCACert])
}
