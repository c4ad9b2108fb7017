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
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// registryProc is a registry process started with a configuration of our
// own (testenv's starters know no token auth).
type registryProc struct {
	bin, dir, addr, config string
	mu                     sync.Mutex
	cmd                    *exec.Cmd
}

// startRegistry starts bin serve <config> (config is a template with DIR
// and ADDR, HOST and PORT), waits until /v2/ answers (401 without a token)
// and stops it at the end of the test.
func startRegistry(t *testing.T, bin, configName, config string) *registryProc {
	t.Helper()
	addr, err := testenv.FreeAddr()
	require.NoError(t, err)
	dir := t.TempDir()
	host, port, _ := strings.Cut(addr, ":")
	config = strings.NewReplacer("DIR", dir, "ADDR", addr, "HOST", host, "PORT", port).Replace(config)
	r := &registryProc{bin: bin, dir: dir, addr: addr, config: filepath.Join(dir, configName)}
	require.NoError(t, os.WriteFile(r.config, []byte(config), 0o644))
	t.Cleanup(r.stop)
	r.start(t)
	return r
}

func (r *registryProc) start(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(r.dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(r.bin, "serve", r.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	r.cmd = cmd
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the registry must ask for a token")
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), `Bearer realm=`)
			return
		}
	}
	t.Fatalf("%s did not answer on %s:\n%s", r.bin, r.addr, r.logs())
}

func (r *registryProc) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *registryProc) restart(t *testing.T) {
	r.stop()
	r.start(t)
}

func (r *registryProc) logs() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	return string(b)
}

// startZot runs zot v2.1.20 with bearer auth: the chart's fragment.
func startZot(t *testing.T, realm, bundle string) *registryProc {
	return startRegistry(t, testenv.ZotBin(t), "config.json", fmt.Sprintf(`{"distSpecVersion": "1.1.1",
  "storage": {"rootDirectory": "DIR/data", "gc": false, "dedupe": false},
  "http": {"address": "HOST", "port": "PORT",
    "auth": {"bearer": {"realm": %q, "service": %q, "cert": %q}}},
  "log": {"level": "error"}}
`, realm, registryauth.DefaultService, bundle))
}

// startDistribution runs CNCF Distribution v3 with auth.token: the
// chart's fragment.
func startDistribution(t *testing.T, realm, bundle string) *registryProc {
	bin := testenv.Require(t, "REGISTRY_BIN", "the token service is tested against the real CNCF Distribution")
	return startRegistry(t, bin, "config.yml", fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: DIR/data
  delete:
    enabled: true
http:
  addr: ADDR
auth:
  token:
    realm: %s
    service: %s
    issuer: %s
    rootcertbundle: %s
`, realm, registryauth.DefaultService, registryauth.DefaultIssuer, bundle))
}

// registryGet sends GET path to the registry with a bearer token and
// returns the status.
func registryGet(t *testing.T, r *registryProc, path, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+r.addr+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}
