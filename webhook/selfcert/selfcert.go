// Package selfcert is the TLS mode for clusters without cert-manager: it
// generates a CA and a serving certificate, shares them between replicas
// through one Secret (the first replica creates it, the others read it, so all
// serve the same certificate), writes them into the server's certificate
// directory, and keeps the caBundle of the webhook's own
// MutatingWebhookConfiguration (and no other) pointing at the CA.
package selfcert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Secret keys. ca.crt may hold two CAs during a rotation.
const (
	KeyCACert = "ca.crt"
	KeyCert   = corev1.TLSCertKey
	KeyKey    = corev1.TLSPrivateKeyKey
)

// Config of the self-managed mode.
type Config struct {
	// Secret that stores the CA and the serving certificate.
	SecretNamespace, SecretName string
	// ServiceName.ServiceNamespace.svc is the name the API server dials.
	ServiceName, ServiceNamespace string
	// WebhookConfiguration is the MutatingWebhookConfiguration whose caBundle
	// is kept current.
	WebhookConfiguration string
	// Validity of the serving certificate (one year if zero); it is renewed
	// when a third of it is left.
	Validity time.Duration
	// Interval of Keep's checks (one minute if zero): a `helm upgrade` may
	// reset the caBundle, which must not stay broken until a restart.
	Interval time.Duration

	// Set by the server.
	Client                     client.Client
	CertDir, CertName, KeyName string
	Log                        logr.Logger
}

func (c *Config) defaults() {
	if c.Validity == 0 {
		c.Validity = 365 * 24 * time.Hour
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.CertName == "" {
		c.CertName = KeyCert
	}
	if c.KeyName == "" {
		c.KeyName = KeyKey
	}
}

// Ensure makes sure the Secret holds a valid certificate, writes it into
// CertDir and sets the caBundle.
func (c *Config) Ensure(ctx context.Context) error {
	c.defaults()
	secret, err := c.secret(ctx)
	if err != nil {
		return err
	}
	if err := c.write(secret); err != nil {
		return err
	}
	return c.patchCABundle(ctx, secret.Data[KeyCACert])
}

// Keep repeats Ensure every Interval until ctx ends.
func (c *Config) Keep(ctx context.Context) {
	c.defaults()
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.Ensure(ctx); err != nil && ctx.Err() == nil {
				c.Log.Error(err, "keeping self-managed certificate")
			}
		}
	}
}

// secret returns the shared Secret, creating or renewing it when needed.
func (c *Config) secret(ctx context.Context) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: c.SecretNamespace, Name: c.SecretName}
	for range 5 {
		s := &corev1.Secret{}
		err := c.Client.Get(ctx, key, s)
		switch {
		case apierrors.IsNotFound(err):
			data, err := c.generate(nil)
			if err != nil {
				return nil, err
			}
			s = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "tekton-oci-transport"}},
				Type: corev1.SecretTypeTLS,
				Data: data,
			}
			if err := c.Client.Create(ctx, s); apierrors.IsAlreadyExists(err) {
				continue // another replica won: read theirs
			} else if err != nil {
				return nil, fmt.Errorf("creating secret %s: %w", key, err)
			}
			c.Log.Info("generated CA and serving certificate", "secret", key.String())
			return s, nil
		case err != nil:
			return nil, fmt.Errorf("reading secret %s: %w", key, err)
		}
		if c.fresh(s.Data) {
			return s, nil
		}
		data, err := c.generate(s.Data[KeyCACert])
		if err != nil {
			return nil, err
		}
		s.Data = data
		// Optimistic: resourceVersion makes a concurrent renewal by another
		// replica fail here, and we read theirs on the next round.
		if err := c.Client.Update(ctx, s); apierrors.IsConflict(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("renewing secret %s: %w", key, err)
		}
		c.Log.Info("renewed CA and serving certificate", "secret", key.String())
		return s, nil
	}
	return nil, fmt.Errorf("secret %s kept changing under us", key)
}

// fresh: the serving certificate parses, names our service, chains to a CA
// in the bundle, and has more than a third of its validity left.
func (c *Config) fresh(data map[string][]byte) bool {
	block, _ := pem.Decode(data[KeyCert])
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data[KeyCACert]) {
		return false
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: c.dnsNames()[0], Roots: pool}); err != nil {
		return false
	}
	left := time.Until(cert.NotAfter)
	return left > cert.NotAfter.Sub(cert.NotBefore)/3
}

func (c *Config) dnsNames() []string {
	svc := c.ServiceName + "." + c.ServiceNamespace + ".svc"
	return []string{svc, svc + ".cluster.local", c.ServiceName + "." + c.ServiceNamespace, c.ServiceName}
}

// generate makes a new CA and serving certificate. oldCA is kept in the
// bundle so the API server still trusts replicas serving the previous
// certificate until they pick up the new one.
func (c *Config) generate(oldCA []byte) (map[string][]byte, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tekton-oci-transport-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(2 * c.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parsing CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating serving key: %w", err)
	}
	names := c.dnsNames()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(c.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding serving key: %w", err)
	}
	bundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if first := firstCert(oldCA); first != nil {
		bundle = append(bundle, first...)
	}
	return map[string][]byte{
		KeyCACert: bundle,
		KeyCert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyKey:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// firstCert returns the first PEM certificate of bundle (the CA in use before
// a rotation; older ones are dropped).
func firstCert(bundle []byte) []byte {
	block, _ := pem.Decode(bundle)
	if block == nil {
		return nil
	}
	return pem.EncodeToMemory(block)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// write puts the certificate into CertDir atomically (rename), only when it
// changed, so the server's file watcher reloads it exactly once.
func (c *Config) write(s *corev1.Secret) error {
	if err := os.MkdirAll(c.CertDir, 0o700); err != nil {
		return fmt.Errorf("creating cert dir: %w", err)
	}
	for name, data := range map[string][]byte{c.KeyName: s.Data[KeyKey], c.CertName: s.Data[KeyCert], KeyCACert: s.Data[KeyCACert]} {
		path := filepath.Join(c.CertDir, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("replacing %s: %w", path, err)
		}
	}
	return nil
}

// patchCABundle sets caBundle on every webhook of our own configuration.
func (c *Config) patchCABundle(ctx context.Context, ca []byte) error {
	if c.WebhookConfiguration == "" {
		return errors.New("no webhook configuration name")
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Client.Get(ctx, types.NamespacedName{Name: c.WebhookConfiguration}, mwc); err != nil {
			return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", c.WebhookConfiguration, err)
		}
		changed := false
		for i := range mwc.Webhooks {
			if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, ca) {
				mwc.Webhooks[i].ClientConfig.CABundle = ca
				changed = true
			}
		}
		if !changed {
			return nil
		}
		if err := c.Client.Update(ctx, mwc); err != nil {
			return fmt.Errorf("updating caBundle of %s: %w", c.WebhookConfiguration, err)
		}
		c.Log.Info("caBundle updated", "mutatingWebhookConfiguration", c.WebhookConfiguration)
		return nil
	})
}
