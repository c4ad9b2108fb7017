package registryauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
)

// fakeAuth knows tokens by value.
type fakeAuth map[string]any // Identity or error

func (f fakeAuth) Review(_ context.Context, token string) (Identity, error) {
	switch v := f[token].(type) {
	case Identity:
		return v, nil
	case error:
		return Identity{}, v
	}
	return Identity{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
}

type fixedKey struct{ k *Key }

func (f fixedKey) Signing() *Key { return f.k }

func newTestHandler(t *testing.T) (*Handler, *Key) {
	k, err := GenerateKey("iss", time.Now())
	require.NoError(t, err)
	return &Handler{
		Service: "svc", Issuer: "iss", RepositoryPrefix: "tekton-oci-transport", TTL: 5 * time.Minute,
		Auth: fakeAuth{
			"token-a":  Identity{Namespace: "team-a", Name: "runner", Pod: "p"},
			"apidown":  errors.New("connection refused"),
			"refused!": fmt.Errorf("%w: expired", ErrUnauthenticated),
		},
		Keys: fixedKey{k},
		Log:  logr.Discard(),
	}, k
}

type result struct {
	status int
	header http.Header
	body   map[string]any
	claims *Claims
	jwt    *jwt.Token
}

func do(t *testing.T, h http.Handler, k *Key, req *http.Request) result {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := result{status: rec.Code, header: rec.Header()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r.body), rec.Body.String())
	}
	if tok, ok := r.body["token"].(string); ok && rec.Code == http.StatusOK {
		var c Claims
		parsed, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return k.Cert.PublicKey, nil },
			jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuedAt(), jwt.WithAudience("svc"), jwt.WithIssuer("iss"), jwt.WithExpirationRequired())
		require.NoError(t, err)
		require.Equal(t, tok, r.body["access_token"])
		r.claims, r.jwt = &c, parsed
	}
	return r
}

func get(query string, user, password string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/token?"+query, nil)
	if user != "" || password != "" {
		r.SetBasicAuth(user, password)
	}
	return r
}

func TestTokenFlow(t *testing.T) {
	h, k := newTestHandler(t)
	own := "tekton-oci-transport/team-a/0b5e/git"
	q := url.Values{"service": {"svc"}, "scope": {"repository:" + own + ":pull,push", "repository:tekton-oci-transport/team-b/x/git:pull"}}

	r := do(t, h, k, get(q.Encode(), "anything", "token-a"))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	require.Equal(t, []Access{{"repository", own, []string{"pull", "push"}}}, r.claims.Access, "own namespace only")
	require.Equal(t, "system:serviceaccount:team-a:runner", r.claims.Subject)
	require.Equal(t, jwt.ClaimStrings{"svc"}, r.claims.Audience)
	require.Equal(t, k.KID, r.jwt.Header["kid"])
	require.Equal(t, "EdDSA", r.jwt.Header["alg"])
	require.Equal(t, 5*time.Minute+ClockSkew, r.claims.ExpiresAt.Sub(r.claims.IssuedAt.Time))
	require.EqualValues(t, 300, r.body["expires_in"])
	_, err := time.Parse(time.RFC3339, r.body["issued_at"].(string))
	require.NoError(t, err)
	require.NotContains(t, r.body, "scope", "the scope field is OAuth2's")

	// No scope (the registry's /v2/ challenge): a token with no access.
	r = do(t, h, k, get("service=svc", "", "token-a"))
	require.Equal(t, http.StatusOK, r.status)
	require.Empty(t, r.claims.Access)

	// Only what is not ours: a token with no access, not an error (the spec).
	r = do(t, h, k, get("scope=registry:catalog:*&scope=repository:tekton-oci-transport/team-b/u/w:pull,push", "", "token-a"))
	require.Equal(t, http.StatusOK, r.status)
	require.Empty(t, r.claims.Access)

	// No service parameter: the configured one.
	r = do(t, h, k, get("scope=repository:"+own+":pull", "", "token-a"))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, []Access{{"repository", own, []string{"pull"}}}, r.claims.Access)
}

func TestOAuth2Form(t *testing.T) {
	h, k := newTestHandler(t)
	own := "tekton-oci-transport/team-a/u/w"
	post := func(form url.Values) result {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(t, h, k, req)
	}
	scope := "repository:" + own + ":pull,push repository:tekton-oci-transport/team-b/u/w:pull"
	for _, form := range []url.Values{
		{"grant_type": {"password"}, "username": {"x"}, "password": {"token-a"}, "service": {"svc"}, "scope": {scope}, "client_id": {"oras"}},
		{"grant_type": {"refresh_token"}, "refresh_token": {"token-a"}, "service": {"svc"}, "scope": {scope}},
	} {
		r := post(form)
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Equal(t, []Access{{"repository", own, []string{"pull", "push"}}}, r.claims.Access)
		require.Equal(t, "repository:"+own+":pull,push", r.body["scope"])
	}
	r := post(url.Values{"grant_type": {"client_credentials"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	r = post(url.Values{"grant_type": {"password"}, "password": {"refused!"}})
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Empty(t, r.header.Get("WWW-Authenticate"), "OAuth2 clients get no Basic challenge")

	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=password&password="+strings.Repeat("x", maxFormBytes)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, http.StatusBadRequest, do(t, h, k, req).status)
}

func TestRefusals(t *testing.T) {
	h, k := newTestHandler(t)
	msg := func(r result) string {
		errs, _ := r.body["errors"].([]any)
		require.Len(t, errs, 1, r.body)
		return errs[0].(map[string]any)["message"].(string)
	}
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		msg    string
	}{
		{"no credentials", get("scope=repository:a:pull", "", ""), http.StatusUnauthorized, "a ServiceAccount token is required"},
		{"a token the API server refuses", get("", "u", "refused!"), http.StatusUnauthorized, "ServiceAccount token refused: unauthenticated: expired"},
		{"an unknown token", get("", "u", "forged"), http.StatusUnauthorized, "unknown token"},
		{"the API server is down", get("", "u", "apidown"), http.StatusServiceUnavailable, "connection refused"},
		{"another service", get("service=other", "u", "token-a"), http.StatusBadRequest, `issues tokens for "svc" only`},
		{"a malformed scope", get("scope=repository:a", "u", "token-a"), http.StatusBadRequest, "invalid scope"},
		{"a wrong path", httptest.NewRequest(http.MethodGet, "/v2/token", nil), http.StatusNotFound, "no such endpoint"},
		{"a wrong method", httptest.NewRequest(http.MethodPut, "/token", nil), http.StatusMethodNotAllowed, "GET or POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, h, k, tc.req)
			require.Equal(t, tc.status, r.status)
			require.Contains(t, msg(r), tc.msg)
			if tc.status == http.StatusUnauthorized {
				require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic realm=")
			}
		})
	}

	h.Keys = fixedKey{}
	require.Equal(t, http.StatusServiceUnavailable, do(t, h, k, get("", "u", "token-a")).status, "no key yet")
	require.Equal(t, http.StatusServiceUnavailable, do(t, h, k, httptest.NewRequest(http.MethodGet, HealthPath, nil)).status)
	h.Keys = fixedKey{k}
	require.Equal(t, http.StatusOK, do(t, h, k, httptest.NewRequest(http.MethodGet, HealthPath, nil)).status)
}

// What the TokenReview status must say for a token to be a namespace's.
func TestIdentityOf(t *testing.T) {
	const aud = DefaultAudience
	sa := func(ns, name string, groups ...string) authenticationv1.UserInfo {
		return authenticationv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + name, Groups: groups}
	}
	good := authenticationv1.TokenReviewStatus{
		Authenticated: true, Audiences: []string{aud},
		User: authenticationv1.UserInfo{
			Username: "system:serviceaccount:team-a:runner",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"},
			Extra:    map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"build-pod"}},
		},
	}
	id, err := identityOf(good, aud)
	require.NoError(t, err)
	require.Equal(t, Identity{Namespace: "team-a", Name: "runner", Pod: "build-pod"}, id)
	require.Equal(t, "system:serviceaccount:team-a:runner", id.Username())

	for name, tc := range map[string]struct {
		st  authenticationv1.TokenReviewStatus
		err string
	}{
		"not authenticated":      {authenticationv1.TokenReviewStatus{Error: "token has expired"}, "did not authenticate the token for audience oci-transport.tekton.dev/registry: token has expired"},
		"no audience returned":   {authenticationv1.TokenReviewStatus{Authenticated: true, User: good.User}, "do not include"},
		"another audience":       {authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"}, User: good.User}, "do not include"},
		"a person":               {authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{aud}, User: authenticationv1.UserInfo{Username: "alice", Groups: []string{"system:serviceaccounts:team-a"}}}, `"alice" is not a ServiceAccount`},
		"a node":                 {authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{aud}, User: authenticationv1.UserInfo{Username: "system:node:n1"}}, "is not a ServiceAccount"},
		"no name":                {authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{aud}, User: sa("team-a", "", "system:serviceaccounts:team-a")}, "is not a ServiceAccount"},
		"a colon too many":       {authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{aud}, User: sa("team-a", "x:y", "system:serviceaccounts:team-a")}, "is not a ServiceAccount"},
		"a namespace no one has": {authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{aud}, User: sa("Team_A", "x", "system:serviceaccounts:Team_A")}, "is not a ServiceAccount"},
		"not in its group":       {authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{aud}, User: sa("team-a", "runner", "system:serviceaccounts:team-b")}, "not in group system:serviceaccounts:team-a"},
	} {
		_, err := identityOf(tc.st, aud)
		require.ErrorIs(t, err, ErrUnauthenticated, name)
		require.ErrorContains(t, err, tc.err, name)
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Namespace: "ns", SecretName: "s", Issuer: "i", Service: "svc", Audience: "a", RepositoryPrefix: "tekton-oci-transport", TTL: DefaultTTL}
	require.NoError(t, good.Validate())
	bad := good
	bad.Namespace, bad.TTL, bad.RepositoryPrefix, bad.CertFile = "", 10*time.Second, "Upper/Case", "tls.crt"
	err := bad.Validate()
	require.ErrorContains(t, err, "--namespace must not be empty")
	require.ErrorContains(t, err, "--token-ttl must be in [1m0s, 1h0m0s]")
	require.ErrorContains(t, err, `--repository-prefix "Upper/Case"`)
	require.ErrorContains(t, err, "both a certificate and a key")
}
