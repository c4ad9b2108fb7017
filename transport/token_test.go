package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// The token file is read on every call: the kubelet rewrites a projected
// token before it expires.
func TestTokenFileCredential(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte("first\n"), 0o600))
	fallback := func(_ context.Context, host string) (auth.Credential, error) {
		return auth.Credential{Username: "docker", Password: host}, nil
	}
	cred := tokenFileCredential("zot:5000", path, fallback)

	c, err := cred(ctx, "zot:5000")
	require.NoError(t, err)
	require.Equal(t, auth.Credential{Username: TokenUsername, Password: "first"}, c)
	require.NoError(t, os.WriteFile(path, []byte("rotated"), 0o600))
	c, err = cred(ctx, "zot:5000")
	require.NoError(t, err)
	require.Equal(t, "rotated", c.Password)

	c, err = cred(ctx, "elsewhere:443")
	require.NoError(t, err)
	require.Equal(t, auth.Credential{Username: "docker", Password: "elsewhere:443"}, c, "other hosts: never the ServiceAccount token")
	c, err = tokenFileCredential("zot:5000", path, nil)(ctx, "elsewhere:443")
	require.NoError(t, err)
	require.Equal(t, auth.EmptyCredential, c)

	require.NoError(t, os.WriteFile(path, []byte(" \n"), 0o600))
	_, err = cred(ctx, "zot:5000")
	require.ErrorContains(t, err, "is empty")
	require.NoError(t, os.Remove(path))
	_, err = cred(ctx, "zot:5000")
	require.ErrorContains(t, err, "--registry-token-file")
}

func TestTokenFileIsCheckedAtStart(t *testing.T) {
	o := Options{Registry: "zot:5000", Repository: "r", TokenFile: filepath.Join(t.TempDir(), "missing")}
	_, err := newClient(&o)
	var u *UsageError
	require.ErrorAs(t, err, &u)
	require.ErrorContains(t, err, "--registry-token-file")
}

func TestExplainRefusal(t *testing.T) {
	resp := func(host string, status int) error {
		return fmt.Errorf("fetch: %w", &errcode.ErrorResponse{Method: http.MethodGet, URL: &url.URL{Scheme: "http", Host: host, Path: "/x"}, StatusCode: status})
	}
	c := &client{opts: &Options{Registry: "zot:5000", Repository: "p/team-b/u/w", TokenFile: "/var/run/token"}}
	var denied *RegistryDeniedError
	err := c.explainRefusal(resp("zot:5000", http.StatusUnauthorized))
	require.ErrorAs(t, err, &denied)
	require.ErrorContains(t, err, "the registry refused access to repository p/team-b/u/w")
	require.ErrorContains(t, err, "only on its own namespace's repositories")
	require.ErrorAs(t, c.explainRefusal(resp("zot:5000", http.StatusForbidden)), &denied)

	for _, err := range []error{
		resp("token-service:9444", http.StatusUnauthorized), // the token service says why itself
		resp("zot:5000", http.StatusNotFound),
		errors.New("other"),
		nil,
	} {
		require.Equal(t, err, c.explainRefusal(err))
	}
	c.opts.TokenFile = ""
	e := resp("zot:5000", http.StatusUnauthorized)
	require.Equal(t, e, c.explainRefusal(e), "no token file: as before")
}
