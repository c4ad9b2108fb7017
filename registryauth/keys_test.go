package registryauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The thumbprints of RFC 7638 (section 3.1, RSA) and RFC 8037 (appendix
// A.3, Ed25519): Distribution's algorithm is the RFC's for these types.
func TestThumbprintRFCVectors(t *testing.T) {
	b64 := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		require.NoError(t, err)
		return b
	}
	rsaKey := &rsa.PublicKey{
		N: new(big.Int).SetBytes(b64("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")),
		E: 65537,
	}
	require.Equal(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", Thumbprint(rsaKey))
	require.Equal(t, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", Thumbprint(ed25519.PublicKey(b64("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"))))
	require.Empty(t, Thumbprint("not a key"))
}

func TestGeneratedKeySignsWhatItsCertificateVerifies(t *testing.T) {
	now := time.Now()
	k, err := GenerateKey("iss", now)
	require.NoError(t, err)
	require.Equal(t, jwt.SigningMethodEdDSA, k.Method)
	require.Equal(t, Thumbprint(k.Cert.PublicKey), k.KID)
	require.True(t, k.Cert.NotAfter.After(now.AddDate(9, 0, 0)))

	signed, err := Mint(k, "iss", "svc", "system:serviceaccount:a:b", nil, now, time.Minute)
	require.NoError(t, err)
	var c Claims
	tok, err := jwt.ParseWithClaims(signed, &c, func(*jwt.Token) (any, error) { return k.Cert.PublicKey, nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuedAt(), jwt.WithAudience("svc"), jwt.WithIssuer("iss"))
	require.NoError(t, err)
	require.Equal(t, k.KID, tok.Header["kid"])
	require.NotNil(t, c.Access, `"access": [] rather than null`)
}

// Keys put in the Secret by hand: ECDSA and RSA of the supported sizes;
// the others are refused.
func TestKeyTypes(t *testing.T) {
	self := func(t *testing.T, key any) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		pub := key.(crypto.Signer).Public()
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		name   string
		key    any
		method jwt.SigningMethod
		err    string
	}{
		{"P-256", p256, jwt.SigningMethodES256, ""},
		{"P-384", p384, jwt.SigningMethodES384, ""},
		{"RSA 2048", rsa2048, jwt.SigningMethodRS256, ""},
		{"P-521", p521, nil, "want P-256 or P-384"},
		{"RSA 1024", rsa1024, nil, "want 2048 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.MarshalPKCS8PrivateKey(tc.key)
			require.NoError(t, err)
			data := map[string][]byte{
				SecretKey:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
				SecretBundle: certsPEM([]*x509.Certificate{self(t, tc.key)}),
			}
			ks, err := parseKeySet(data)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.method, ks.signing.Method)
			signed, err := Mint(ks.signing, "i", "s", "u", nil, time.Now(), time.Minute)
			require.NoError(t, err)
			_, err = jwt.Parse(signed, func(*jwt.Token) (any, error) { return ks.bundle[0].PublicKey, nil })
			require.NoError(t, err)
		})
	}
}

func TestParseKeySetRefusesWhatTheRegistriesCouldNotUse(t *testing.T) {
	a, err := GenerateKey("i", time.Now())
	require.NoError(t, err)
	b, err := GenerateKey("i", time.Now())
	require.NoError(t, err)
	good, err := (&keySet{signing: a, bundle: []*x509.Certificate{a.Cert, b.Cert}}).data()
	require.NoError(t, err)
	with := func(k string, v []byte) map[string][]byte {
		d := map[string][]byte{}
		for k, v := range good {
			d[k] = v
		}
		if v == nil {
			delete(d, k)
		} else {
			d[k] = v
		}
		return d
	}
	bKey, err := keyPEM(b)
	require.NoError(t, err)
	_, err = parseKeySet(good)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		data map[string][]byte
		err  string
	}{
		"no key":                      {with(SecretKey, nil), "key.pem: no PEM block"},
		"no bundle":                   {with(SecretBundle, nil), "bundle.pem: no PEM certificate"},
		"the key is not the first":    {with(SecretBundle, certsPEM([]*x509.Certificate{b.Cert, a.Cert})), "zot trusts only that one"},
		"a key in the bundle":         {with(SecretBundle, append(certsPEM([]*x509.Certificate{a.Cert}), bKey...)), `want CERTIFICATE only`},
		"a staged key without a cert": {with(SecretNextKey, mustKeyPEM(t)), "next-key.pem has no certificate"},
		"a certificate as the key":    {with(SecretKey, certsPEM([]*x509.Certificate{a.Cert})), "want a private key"},
	} {
		_, err := parseKeySet(tc.data)
		require.ErrorContains(t, err, tc.err, name)
	}
	ks, err := parseKeySet(with(SecretNextKey, bKey))
	require.NoError(t, err)
	require.Equal(t, b.KID, ks.next.KID)
}

func mustKeyPEM(t *testing.T) []byte {
	k, err := GenerateKey("x", time.Now())
	require.NoError(t, err)
	p, err := keyPEM(k)
	require.NoError(t, err)
	return p
}

func TestKeyStore(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	secrets := cs.CoreV1().Secrets("release")
	s1 := &KeyStore{Secrets: secrets, Name: "keys", Issuer: "iss", Log: logr.Discard()}
	require.Nil(t, s1.Signing())
	require.NoError(t, s1.Load(ctx), "creates the Secret")
	sec, err := secrets.Get(ctx, "keys", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, s1.Bundle(), sec.Data[SecretBundle])
	kid := s1.Signing().KID

	s2 := &KeyStore{Secrets: secrets, Name: "keys", Issuer: "iss", Log: logr.Discard()}
	require.NoError(t, s2.Load(ctx))
	require.Equal(t, kid, s2.Signing().KID, "a second replica takes the same key")

	// Deleted: written back with the same keys, so the registries' bundle stays right.
	require.NoError(t, secrets.Delete(ctx, "keys", metav1.DeleteOptions{}))
	require.NoError(t, s1.Load(ctx))
	require.Equal(t, kid, s1.Signing().KID)
	again, err := secrets.Get(ctx, "keys", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, sec.Data[SecretBundle], again.Data[SecretBundle])

	// A Secret someone broke is an error, never overwritten; the loaded key stays.
	again.Data[SecretKey] = []byte("garbage")
	_, err = secrets.Update(ctx, again, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.ErrorContains(t, s1.Load(ctx), "key.pem")
	require.Equal(t, kid, s1.Signing().KID)
	broken, err := secrets.Get(ctx, "keys", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, []byte("garbage"), broken.Data[SecretKey])

	fresh := &KeyStore{Secrets: secrets, Name: "keys", Issuer: "iss", Log: logr.Discard()}
	require.Error(t, fresh.Load(ctx))
	require.Nil(t, fresh.Signing())
}

// A rotation publishes the next key before it signs, keeps the previous one
// trusted after, and the signing key's certificate is always first.
func TestRotate(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	secrets := cs.CoreV1().Secrets("release")
	s := &KeyStore{Secrets: secrets, Name: "keys", Issuer: "iss", Log: logr.Discard()}
	require.NoError(t, s.Load(ctx))
	old := s.Signing()
	bundleKIDs := func() []string {
		t.Helper()
		require.NoError(t, s.Load(ctx))
		certs, err := parseCertificates(s.Bundle())
		require.NoError(t, err)
		var out []string
		for _, c := range certs {
			out = append(out, Thumbprint(c.PublicKey))
		}
		return out
	}
	now := time.Now()

	require.ErrorContains(t, Rotate(ctx, secrets, "keys", "iss", Promote, now), "no staged key")
	require.NoError(t, Rotate(ctx, secrets, "keys", "iss", Stage, now))
	require.ErrorContains(t, Rotate(ctx, secrets, "keys", "iss", Stage, now), "staged already")
	kids := bundleKIDs()
	require.Len(t, kids, 2)
	require.Equal(t, old.KID, kids[0], "staged: the current key still signs and is first")
	require.Equal(t, old.KID, s.Signing().KID)
	next := kids[1]

	require.NoError(t, Rotate(ctx, secrets, "keys", "iss", Promote, now))
	require.Equal(t, []string{next, old.KID}, bundleKIDs(), "promoted: the new key first, the old one still trusted")
	require.Equal(t, next, s.Signing().KID)
	sec, err := secrets.Get(ctx, "keys", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotContains(t, sec.Data, SecretNextKey)

	require.NoError(t, Rotate(ctx, secrets, "keys", "iss", Retire, now))
	require.Equal(t, []string{next}, bundleKIDs())
	require.ErrorContains(t, Rotate(ctx, secrets, "keys", "iss", "spin", now), "unknown rotation phase")

	_, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.ErrorContains(t, Rotate(ctx, secrets, "empty", "iss", Stage, now), "bundle.pem")
}
