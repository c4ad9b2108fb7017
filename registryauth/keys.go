package registryauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"
)

// The keys of the signing Secret's data.
const (
	// SecretKey is the PEM private key the service signs with (PKCS#8;
	// PKCS#1 RSA and SEC 1 EC keys are read too): Ed25519, ECDSA P-256 or
	// P-384, or RSA of 2048 bits or more.
	SecretKey = "key.pem"
	// SecretBundle is what the registries trust, PEM certificates: the
	// signing key's first (zot v2.1.20 reads only the first block of its
	// `cert` file), then any other still trusted one (Distribution's
	// `rootcertbundle` reads them all). The chart mounts only this item
	// into the registry.
	SecretBundle = "bundle.pem"
	// SecretNextKey is a staged key (Rotate): its certificate is in the
	// bundle already, it signs nothing yet.
	SecretNextKey = "next-key.pem"
)

// Key is a private key the service signs with and the self-signed
// certificate the registries know it by.
type Key struct {
	Signer crypto.Signer
	Cert   *x509.Certificate
	// KID is the JWT header's `kid`: the RFC 7638 thumbprint of the public
	// key computed exactly as CNCF Distribution computes it for each
	// certificate of its rootcertbundle (token.GetJWKThumbprint), which is
	// how it finds the key of a token without an x5c chain. zot ignores it.
	KID    string
	Method jwt.SigningMethod
}

// keySet is a parsed signing Secret.
type keySet struct {
	signing *Key
	next    *Key // staged; nil when none
	bundle  []*x509.Certificate
}

// GenerateKey makes an Ed25519 key and a self-signed certificate for it.
// Both registries take EdDSA; its signatures and keys are small and its
// thumbprint has no padding ambiguity (Distribution's thumbprint of an EC
// key drops leading zero bytes of the coordinates, RFC 7638 keeps them).
// The registries use only the certificate's public key, never its dates
// (no x5c chain is sent), so it is valid for 10 years.
func GenerateKey(issuer string, now time.Time) (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: issuer + " registry token signing key " + now.UTC().Format(time.RFC3339)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return newKey(priv, cert)
}

// newKey checks that the certificate is the key's and picks the algorithm.
func newKey(signer crypto.Signer, cert *x509.Certificate) (*Key, error) {
	k := &Key{Signer: signer, Cert: cert}
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey:
		k.Method = jwt.SigningMethodEdDSA
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			k.Method = jwt.SigningMethodES256
		case elliptic.P384():
			k.Method = jwt.SigningMethodES384
		default:
			return nil, fmt.Errorf("ECDSA curve %s: want P-256 or P-384", pub.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: want 2048 or more", pub.N.BitLen())
		}
		k.Method = jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("key type %T: want Ed25519, ECDSA or RSA", pub)
	}
	if cert != nil && !samePublicKey(cert.PublicKey, signer.Public()) {
		return nil, errors.New("the certificate is not the key's")
	}
	k.KID = Thumbprint(signer.Public())
	return k, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

// Thumbprint is CNCF Distribution v3's GetJWKThumbprint of a public key,
// the `kid` it matches against the certificates it trusts: the base64url
// SHA-256 of the RFC 7638 JSON members. For EC keys the coordinates are
// taken as big.Int.Bytes() (no leading zeros), as Distribution does.
func Thumbprint(pub crypto.PublicKey) string {
	enc := base64.RawURLEncoding.EncodeToString
	var s string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		s = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, enc(big.NewInt(int64(k.E)).Bytes()), enc(k.N.Bytes()))
	case *ecdsa.PublicKey:
		x, y, err := ecCoordinates(k)
		if err != nil {
			return ""
		}
		s = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Params().Name, enc(x.Bytes()), enc(y.Bytes()))
	case ed25519.PublicKey:
		s = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, enc(k))
	default:
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return enc(sum[:])
}

// ecCoordinates are the affine coordinates of an EC public key, read from
// its uncompressed encoding (the X and Y fields are deprecated).
func ecCoordinates(k *ecdsa.PublicKey) (x, y *big.Int, err error) {
	raw, err := k.Bytes()
	if err != nil {
		return nil, nil, err
	}
	n := (len(raw) - 1) / 2
	return new(big.Int).SetBytes(raw[1 : 1+n]), new(big.Int).SetBytes(raw[1+n:]), nil
}

// parseKeySet reads a signing Secret's data and checks what the registries
// rely on: the bundle's first certificate is the signing key's, a staged
// key's certificate is in the bundle.
func parseKeySet(data map[string][]byte) (*keySet, error) {
	bundle, err := parseCertificates(data[SecretBundle])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SecretBundle, err)
	}
	signer, err := parsePrivateKey(data[SecretKey])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SecretKey, err)
	}
	signing, err := newKey(signer, bundle[0])
	if err != nil {
		return nil, fmt.Errorf("%s and the first certificate of %s (zot trusts only that one): %w", SecretKey, SecretBundle, err)
	}
	ks := &keySet{signing: signing, bundle: bundle}
	if raw := data[SecretNextKey]; len(raw) > 0 {
		signer, err := parsePrivateKey(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", SecretNextKey, err)
		}
		for _, c := range bundle[1:] {
			if samePublicKey(c.PublicKey, signer.Public()) {
				ks.next, err = newKey(signer, c)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", SecretNextKey, err)
				}
			}
		}
		if ks.next == nil {
			return nil, fmt.Errorf("%s has no certificate in %s", SecretNextKey, SecretBundle)
		}
	}
	return ks, nil
}

func parseCertificates(raw []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q: want CERTIFICATE only", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func parsePrivateKey(raw []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: want a private key", b.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", k)
	}
	return s, nil
}

func keyPEM(k *Key) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func certsPEM(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// data is the Secret data of a key set.
func (ks *keySet) data() (map[string][]byte, error) {
	key, err := keyPEM(ks.signing)
	if err != nil {
		return nil, err
	}
	d := map[string][]byte{SecretKey: key, SecretBundle: certsPEM(ks.bundle)}
	if ks.next != nil {
		if d[SecretNextKey], err = keyPEM(ks.next); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// KeyStore keeps the signing key in a Secret of the service's namespace:
// it creates the Secret with a new key when it is missing, and re-reads it
// so that every replica signs with what the Secret holds (Rotate).
type KeyStore struct {
	Secrets corev1client.SecretInterface // of the service's namespace
	Name    string
	// Issuer names the certificates of generated keys.
	Issuer string
	Log    logr.Logger
	// Now is the clock (tests); nil = time.Now.
	Now func() time.Time

	cur atomic.Pointer[keySet]
}

func (s *KeyStore) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Signing is the key to sign with; nil before the first Load.
func (s *KeyStore) Signing() *Key {
	if ks := s.cur.Load(); ks != nil {
		return ks.signing
	}
	return nil
}

// Bundle is the PEM certificate bundle the registries must trust (what the
// Secret's bundle.pem holds); nil before the first Load.
func (s *KeyStore) Bundle() []byte {
	if ks := s.cur.Load(); ks != nil {
		return certsPEM(ks.bundle)
	}
	return nil
}

// Load reads the Secret, creating it with a new key when it does not
// exist. A Secret whose data is not a valid key set is an error: it is
// never overwritten. When the Secret was deleted after a successful Load,
// it is written back with the keys in memory, so the registries' bundle
// stays right.
func (s *KeyStore) Load(ctx context.Context) error {
	sec, err := s.Secrets.Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ks := s.cur.Load()
		if ks == nil {
			k, err := GenerateKey(s.Issuer, s.now())
			if err != nil {
				return err
			}
			ks = &keySet{signing: k, bundle: []*x509.Certificate{k.Cert}}
		}
		data, err := ks.data()
		if err != nil {
			return err
		}
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.Name, Labels: map[string]string{"app.kubernetes.io/component": "registry-token-service"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}
		created, err := s.Secrets.Create(ctx, sec, metav1.CreateOptions{})
		switch {
		case err == nil:
			s.Log.Info("created the token signing Secret", "secret", s.Name, "kid", ks.signing.KID)
			sec = created
		case apierrors.IsAlreadyExists(err):
			// Another replica was first: take its keys.
			if sec, err = s.Secrets.Get(ctx, s.Name, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("reading Secret %s: %w", s.Name, err)
			}
		default:
			return fmt.Errorf("creating Secret %s: %w", s.Name, err)
		}
	} else if err != nil {
		return fmt.Errorf("reading Secret %s: %w", s.Name, err)
	}
	ks, err := parseKeySet(sec.Data)
	if err != nil {
		return fmt.Errorf("Secret %s: %w", s.Name, err)
	}
	if old := s.cur.Swap(ks); old != nil && old.signing.KID != ks.signing.KID {
		s.Log.Info("signing with a new key", "secret", s.Name, "kid", ks.signing.KID, "previous", old.signing.KID)
	}
	return nil
}

// Keep re-reads the Secret every interval until ctx ends; a failed read is
// logged and the keys loaded before are kept.
func (s *KeyStore) Keep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Load(ctx); err != nil && ctx.Err() == nil {
				s.Log.Error(err, "re-reading the token signing Secret; still signing with the key loaded before")
			}
		}
	}
}

// Phase is a step of a key rotation.
type Phase string

// The phases of a rotation, in order. Between them the registries must be
// restarted: neither zot nor Distribution re-reads its key file.
const (
	// Stage adds a new key's certificate to the bundle; the current key
	// keeps signing. Then restart the registries: Distribution trusts both.
	Stage Phase = "stage"
	// Promote signs with the staged key (every replica within its reload
	// interval); the previous certificate stays in the bundle, second, so
	// Distribution still accepts the tokens issued before. zot trusts only
	// the bundle's first certificate: restart it now.
	Promote Phase = "promote"
	// Retire drops every certificate but the signing (and a staged) key's
	// from the bundle, once the last token of the previous key expired
	// (the token TTL after Promote).
	Retire Phase = "retire"
)

// Rotate carries out one phase of a key rotation on the signing Secret.
func Rotate(ctx context.Context, secrets corev1client.SecretInterface, name, issuer string, phase Phase, now time.Time) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ks, err := parseKeySet(sec.Data)
		if err != nil {
			return fmt.Errorf("Secret %s: %w", name, err)
		}
		switch phase {
		case Stage:
			if ks.next != nil {
				return fmt.Errorf("a key is staged already (kid %s): promote it first", ks.next.KID)
			}
			if ks.next, err = GenerateKey(issuer, now); err != nil {
				return err
			}
			ks.bundle = append(ks.bundle, ks.next.Cert)
		case Promote:
			if ks.next == nil {
				return errors.New("no staged key: stage one first")
			}
			bundle := []*x509.Certificate{ks.next.Cert}
			for _, c := range ks.bundle {
				if !samePublicKey(c.PublicKey, ks.next.Signer.Public()) {
					bundle = append(bundle, c)
				}
			}
			ks.signing, ks.next, ks.bundle = ks.next, nil, bundle
		case Retire:
			ks.bundle = ks.bundle[:1]
			if ks.next != nil {
				ks.bundle = append(ks.bundle, ks.next.Cert)
			}
		default:
			return fmt.Errorf("unknown rotation phase %q", phase)
		}
		if sec.Data, err = ks.data(); err != nil {
			return err
		}
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		return err
	})
}
