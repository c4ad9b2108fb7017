package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// TokenUsername is the user name sent with the ServiceAccount token; the
// token service reads only the password.
const TokenUsername = "oci-transport-step"

// maxTokenFileBytes bounds a token file (a projected token is about 1 KiB).
const maxTokenFileBytes = 64 << 10

func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--registry-token-file: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxTokenFileBytes+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("--registry-token-file %s: %w", path, err)
	}
	if n > maxTokenFileBytes {
		return "", fmt.Errorf("--registry-token-file %s: over %d bytes", path, maxTokenFileBytes)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if tok == "" {
		return "", fmt.Errorf("--registry-token-file %s is empty", path)
	}
	return tok, nil
}

// tokenFileCredential presents the token in path, read anew on each call
// (the client asks only when the registry challenges it, so at most once
// per token the registry refuses), as the password for registry; other
// hosts get what fallback gives (nil: nothing).
func tokenFileCredential(registry, path string, fallback auth.CredentialFunc) auth.CredentialFunc {
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		if hostport != registry {
			if fallback != nil {
				return fallback(ctx, hostport)
			}
			return auth.EmptyCredential, nil
		}
		tok, err := readTokenFile(path)
		if err != nil {
			return auth.EmptyCredential, err
		}
		return auth.Credential{Username: TokenUsername, Password: tok}, nil
	}
}

// RegistryDeniedError is the registry refusing a request with the token
// the token service issued for the step's ServiceAccount token: the
// service granted less than the request needs.
type RegistryDeniedError struct {
	Repository, TokenFile string
	Err                   error
}

func (e *RegistryDeniedError) Error() string {
	return fmt.Sprintf("the registry refused access to repository %s with the token obtained for the ServiceAccount token of --registry-token-file %s: "+
		"a run's ServiceAccount gets pull and push only on its own namespace's repositories (<prefix>/<namespace>/...; the token service logs what it denied): %v",
		e.Repository, e.TokenFile, e.Err)
}

func (e *RegistryDeniedError) Unwrap() error { return e.Err }

// explainRefusal turns the registry's own 401 or 403, when the step
// authenticates with a token file, into a RegistryDeniedError. A refusal by
// the token service (its URL is not the registry's) already says why.
func (c *client) explainRefusal(err error) error {
	var er *errcode.ErrorResponse
	if c.opts.TokenFile == "" || !errors.As(err, &er) || er.URL == nil || er.URL.Host != c.opts.Registry ||
		(er.StatusCode != http.StatusUnauthorized && er.StatusCode != http.StatusForbidden) {
		return err
	}
	return &RegistryDeniedError{Repository: c.opts.Repository, TokenFile: c.opts.TokenFile, Err: err}
}
