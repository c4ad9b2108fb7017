package registryauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// TokenPath is where the service answers token requests (the registries'
// realm is http(s)://<service>:<port>/token).
const TokenPath = "/token"

// HealthPath answers 200 once a signing key is loaded.
const HealthPath = "/healthz"

// Authenticator says whose a presented token is (Reviewer).
type Authenticator interface {
	Review(ctx context.Context, token string) (Identity, error)
}

// Signer gives the key to sign with (KeyStore); nil when none is loaded.
type Signer interface {
	Signing() *Key
}

// Handler is the token endpoint of the Docker registry token flow
// (https://distribution.github.io/distribution/spec/auth/token/):
//
//   - GET /token?service=S&scope=repository:NAME:pull,push with HTTP Basic
//     credentials whose password is the ServiceAccount token (the user name
//     is ignored): what oras-go's auth.Client sends for a Credential with a
//     user name and password, and what Docker clients send;
//   - POST /token with the OAuth2 form (https://distribution.github.io/distribution/spec/auth/oauth/):
//     grant_type=password (password = the token) or grant_type=refresh_token
//     (refresh_token = the token), service, scope (space-separated).
//
// A credential the API server does not authenticate for the audience, or
// that is not a ServiceAccount's, gets 401. Otherwise the answer is a
// token granting the intersection of what was asked and what the
// ServiceAccount's namespace may do (Authorize), possibly nothing: the
// spec makes that no error; the registry then refuses the request.
type Handler struct {
	// Service is the registries' `service` (the token's aud); a request
	// naming another service gets 400.
	Service string
	// Issuer is the token's iss (Distribution's `issuer`).
	Issuer string
	// RepositoryPrefix is the webhook's --repository-prefix: a namespace's
	// repositories are <prefix>/<namespace>/...
	RepositoryPrefix string
	// TTL is how long an issued token is valid.
	TTL time.Duration

	Auth Authenticator
	Keys Signer
	Log  logr.Logger
	// Now is the clock (tests); nil = time.Now.
	Now func() time.Time
}

// maxFormBytes bounds an OAuth2 form body.
const maxFormBytes = 64 << 10

// tokenResponse is the answer to both flows: `token` for the token flow,
// `access_token` for OAuth2 (both set, as the spec allows, so any client
// finds it).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
	Scope       string `json:"scope,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	switch r.URL.Path {
	case HealthPath:
		if h.Keys.Signing() == nil {
			http.Error(w, "no signing key loaded", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
		return
	case TokenPath:
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint: the token endpoint is "+TokenPath)
		return
	}

	var token, service string
	var scopeValues []string
	oauth := false
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		service, scopeValues = q.Get("service"), q["scope"]
		if _, pw, ok := r.BasicAuth(); ok {
			token = pw
		}
	case http.MethodPost:
		oauth = true
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, "UNSUPPORTED", "reading the OAuth2 form: "+err.Error())
			return
		}
		f := r.PostForm
		service, scopeValues = f.Get("service"), f["scope"]
		switch g := f.Get("grant_type"); g {
		case "password":
			token = f.Get("password")
		case "refresh_token":
			token = f.Get("refresh_token")
		default:
			writeError(w, http.StatusBadRequest, "UNSUPPORTED", fmt.Sprintf("grant_type %q: want password or refresh_token, with the ServiceAccount token as the password or refresh token", g))
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "GET or POST only")
		return
	}
	if service != "" && service != h.Service {
		writeError(w, http.StatusBadRequest, "UNSUPPORTED", fmt.Sprintf("service %q: this token service issues tokens for %q only", service, h.Service))
		return
	}
	scopes, err := ParseScopes(scopeValues)
	if err != nil {
		writeError(w, http.StatusBadRequest, "UNSUPPORTED", "invalid scope: "+err.Error())
		return
	}
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="tekton-oci-transport registry token service"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "a ServiceAccount token is required, as the Basic password (GET) or the OAuth2 password or refresh_token (POST)")
		return
	}

	id, err := h.Auth.Review(r.Context(), token)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		h.Log.Info("token request refused", "reason", err.Error(), "scopes", scopeValues)
		if !oauth {
			w.Header().Set("WWW-Authenticate", `Basic realm="tekton-oci-transport registry token service"`)
		}
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "ServiceAccount token refused: "+err.Error())
		return
	case err != nil:
		h.Log.Error(err, "authenticating a token request")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "cannot check the ServiceAccount token now: "+err.Error())
		return
	}

	access := Authorize(h.RepositoryPrefix, id.Namespace, scopes)
	key := h.Keys.Signing()
	if key == nil {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "no signing key loaded yet")
		return
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	signed, err := Mint(key, h.Issuer, h.Service, id.Username(), access, now, h.TTL)
	if err != nil {
		h.Log.Error(err, "signing a token")
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "signing the token failed")
		return
	}
	granted := make([]string, len(access))
	for i, a := range access {
		granted[i] = a.Type + ":" + a.Name + ":" + strings.Join(a.Actions, ",")
	}
	kv := []any{"namespace", id.Namespace, "serviceAccount", id.Name, "pod", id.Pod, "granted", granted}
	if d := denied(scopes, access); len(d) > 0 {
		h.Log.Info("token issued without some requested access: a namespace's runs get pull and push on "+
			NamespaceRoot(h.RepositoryPrefix, id.Namespace)+"... only", append(kv, "denied", d)...)
	} else {
		h.Log.V(1).Info("token issued", kv...)
	}
	resp := tokenResponse{Token: signed, AccessToken: signed, ExpiresIn: int64(h.TTL / time.Second), IssuedAt: now.UTC().Format(time.RFC3339)}
	if oauth {
		resp.Scope = strings.Join(granted, " ")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// denied lists the requested type:name:action that access does not hold.
func denied(scopes []Scope, access []Access) []string {
	var out []string
	for _, sc := range scopes {
		for _, a := range sc.Actions {
			if !slices.ContainsFunc(access, func(e Access) bool {
				return sc.Type == e.Type && sc.Class == "" && sc.Name == e.Name && slices.Contains(e.Actions, a)
			}) {
				out = append(out, Scope{Type: sc.Type, Class: sc.Class, Name: sc.Name, Actions: []string{a}}.String())
			}
		}
	}
	return out
}

// writeError answers in the registry error format, which oras-go and the
// Docker clients print (`unauthorized: ServiceAccount token refused: ...`).
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}
