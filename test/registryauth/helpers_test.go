package registryauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// saToken asks the TokenRequest API for a token of the team's runner,
// bound to pod when given (as the kubelet's projected tokens are).
func saToken(t *testing.T, ns string, pod *corev1.Pod, audiences ...string) string {
	t.Helper()
	exp := int64(600) // the API's minimum
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := suite.admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, req, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// resigned is token with its claims changed by edit, signed again with
// key: the API server's own ServiceAccount signing key makes an expired
// token that is genuine in every other way; another key makes a forgery.
func resigned(t *testing.T, token string, key *ecdsa.PrivateKey, edit func(jwt.MapClaims)) string {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, _, err := jwt.NewParser().ParseUnverified(token, claims)
	require.NoError(t, err)
	edit(claims)
	out := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	out.Header["kid"] = parsed.Header["kid"]
	s, err := out.SignedString(key)
	require.NoError(t, err)
	return s
}

// apiServerSigningKey is the key envtest's kube-apiserver signs
// ServiceAccount tokens with (--service-account-signing-key-file).
func apiServerSigningKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(suite.env.ControlPlane.APIServer.CertDir, "sa-signer.key"))
	require.NoError(t, err)
	b, _ := pem.Decode(raw)
	require.NotNil(t, b)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	ec, ok := k.(*ecdsa.PrivateKey)
	require.True(t, ok, "envtest's ServiceAccount key is %T", k)
	return ec
}

func otherKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

// issued is the token service's answer to a token request.
type issued struct {
	status int
	token  string
	claims registryauth.Claims
	errMsg string
}

// requestToken does what oras-go's auth.Client does for a Credential with
// a user name and password: GET realm?service=&scope=... with Basic auth.
// An issued token is verified with the bundle's first certificate.
func requestToken(t *testing.T, realm, bundle, saToken string, scopes ...string) issued {
	t.Helper()
	q := url.Values{"service": {registryauth.DefaultService}, "scope": scopes}
	req, err := http.NewRequest(http.MethodGet, realm+"?"+q.Encode(), nil)
	require.NoError(t, err)
	if saToken != "" {
		req.SetBasicAuth("oci-transport-step", saToken)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Token  string `json:"token"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	out := issued{status: resp.StatusCode, token: body.Token}
	if len(body.Errors) > 0 {
		out.errMsg = body.Errors[0].Message
	}
	if out.token != "" {
		// The key is the bundle's certificate the kid names, as
		// Distribution picks it.
		raw, err := os.ReadFile(bundle)
		require.NoError(t, err)
		keyOf := func(tok *jwt.Token) (any, error) {
			for rest := raw; ; {
				var b *pem.Block
				if b, rest = pem.Decode(rest); b == nil {
					return nil, fmt.Errorf("kid %v is in no certificate of the bundle", tok.Header["kid"])
				}
				c, err := x509.ParseCertificate(b.Bytes)
				require.NoError(t, err)
				if registryauth.Thumbprint(c.PublicKey) == tok.Header["kid"] {
					return c.PublicKey, nil
				}
			}
		}
		_, err = jwt.ParseWithClaims(out.token, &out.claims, keyOf,
			jwt.WithAudience(registryauth.DefaultService), jwt.WithIssuer(registryauth.DefaultIssuer), jwt.WithIssuedAt())
		require.NoError(t, err)
	}
	return out
}

func tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(p, []byte(token), 0o600))
	return p
}

// startZot runs zot v2.1.20 with bearer auth: the chart's fragment.
func startZot(t *testing.T, realm, bundle string) *testenv.Registry {
	t.Helper()
	r, err := testenv.StartZotWith(testenv.ZotBin(t), testenv.ZotOptions{Auth: fmt.Sprintf(
		`{"bearer": {"realm": %q, "service": %q, "cert": %q}}`, realm, registryauth.DefaultService, bundle)})
	return asksForToken(t, r, err)
}

// startDistribution runs CNCF Distribution v3 with auth.token: the
// chart's fragment.
func startDistribution(t *testing.T, realm, bundle string) *testenv.Registry {
	t.Helper()
	bin := testenv.Require(t, "REGISTRY_BIN", "the token service is tested against the real CNCF Distribution")
	r, err := testenv.StartRegistry(bin, testenv.RegistryOptions{Extra: fmt.Sprintf(`auth:
  token:
    realm: %s
    service: %s
    issuer: %s
    rootcertbundle: %s
`, realm, registryauth.DefaultService, registryauth.DefaultIssuer, bundle)})
	return asksForToken(t, r, err)
}

// asksForToken checks that a registry started asks for a bearer token, and
// closes it at the end of the test.
func asksForToken(t *testing.T, r *testenv.Registry, err error) *testenv.Registry {
	t.Helper()
	require.NoError(t, err)
	t.Cleanup(r.Close)
	resp, err := http.Get("http://" + r.Addr() + "/v2/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the registry must ask for a token\n%s", r.Logs())
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), `Bearer realm=`)
	return r
}

// restart stops the registry and starts it again on the same address and
// storage, reading its configuration (and the bundle) anew.
func restart(t *testing.T, r *testenv.Registry) {
	t.Helper()
	r.Stop()
	require.NoError(t, r.Start())
}

// registryGet sends GET path to the registry with a bearer token and
// returns the status.
func registryGet(t *testing.T, r *testenv.Registry, path, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+r.Addr()+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}
