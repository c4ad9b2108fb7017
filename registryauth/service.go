package registryauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// Defaults of the webhook's --token-* flags (the chart sets each of them).
const (
	// DefaultAudience is the audience of the projected ServiceAccount
	// token mounted into the injected steps; the service asks the API
	// server to authenticate tokens for it and nothing else, so neither a
	// pod's default API token nor a token made for another audience works.
	DefaultAudience = "oci-transport.tekton.dev/registry"
	// DefaultIssuer is the tokens' iss (Distribution's auth.token.issuer).
	DefaultIssuer = "tekton-oci-transport"
	// DefaultService is the tokens' aud, the registries' `service`.
	DefaultService = "tekton-oci-transport-registry"
	// DefaultSecretName is the Secret that holds the signing key and the
	// bundle the registries trust, in the webhook's namespace.
	DefaultSecretName = "tekton-oci-transport-registry-token"
	// DefaultTTL is the lifetime of an issued token: a client fetches a
	// new one when the registry answers 401, so a short one costs one
	// TokenReview per step and scope.
	DefaultTTL = 5 * time.Minute
	// MinTTL is the token spec's floor for older clients.
	MinTTL = time.Minute
	// MaxTTL bounds what a leaked registry token is worth.
	MaxTTL = time.Hour
	// DefaultReloadInterval is how often every replica re-reads the Secret
	// (a rotation takes effect within it).
	DefaultReloadInterval = 30 * time.Second
)

// Options configure the token service (cmd/webhook fills them from flags).
type Options struct {
	// Addr is host:port of the token service.
	Addr string
	// CertFile and KeyFile, when set, make it serve HTTPS with them
	// (reloaded when they change); else plain HTTP.
	CertFile, KeyFile string

	Namespace, SecretName string
	Issuer, Service       string
	Audience              string
	RepositoryPrefix      string
	TTL                   time.Duration

	Log logr.Logger
}

// Validate reports every problem with the options at once.
func (o Options) Validate() error {
	var errs []error
	for _, f := range []struct{ flag, v string }{
		{"--namespace", o.Namespace}, {"--token-signing-secret", o.SecretName}, {"--token-issuer", o.Issuer},
		{"--token-registry-service", o.Service}, {"--token-audience", o.Audience},
	} {
		if strings.TrimSpace(f.v) == "" {
			errs = append(errs, fmt.Errorf("%s must not be empty for the token service", f.flag))
		}
	}
	if p := strings.Trim(o.RepositoryPrefix, "/"); p != "" && !ValidRepository(p) {
		errs = append(errs, fmt.Errorf("--repository-prefix %q is not a repository path (lower-case components joined by /)", o.RepositoryPrefix))
	}
	if o.TTL < MinTTL || o.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("--token-ttl must be in [%s, %s], not %s", MinTTL, MaxTTL, o.TTL))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("the token service needs both a certificate and a key for TLS"))
	}
	return errors.Join(errs...)
}

// Service is the token service: the signing keys, the handler, the server.
type Service struct {
	Handler *Handler
	Keys    *KeyStore
	// ReloadInterval is how often the Secret is re-read; 0 =
	// DefaultReloadInterval.
	ReloadInterval time.Duration
	// CertFile and KeyFile: HTTPS when set.
	CertFile, KeyFile string
	Log               logr.Logger
}

// New builds the service for a cluster. The webhook's identity needs to
// create TokenReviews (cluster-wide) and to get, create and update the
// Secret in its namespace.
func New(rc *rest.Config, o Options) (*Service, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// Its own client rate: the webhook's default (5 requests/s) would queue
	// TokenReviews behind each other at a few registry tokens a second.
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 100, 200
	ac, err := authenticationv1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	cc, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	keys := &KeyStore{Secrets: cc.Secrets(o.Namespace), Name: o.SecretName, Issuer: o.Issuer, Log: o.Log.WithName("keys")}
	return &Service{
		Handler: &Handler{
			Service: o.Service, Issuer: o.Issuer, RepositoryPrefix: o.RepositoryPrefix, TTL: o.TTL,
			Auth: &CachedAuthenticator{
				Next: &Reviewer{Reviews: ac.TokenReviews(), Audience: o.Audience},
				TTL:  DefaultReviewCacheTTL, Max: 10000,
			},
			Keys: keys, Log: o.Log,
		},
		Keys:     keys,
		CertFile: o.CertFile, KeyFile: o.KeyFile,
		Log: o.Log,
	}, nil
}

// loadTimeout is how long Serve keeps trying to read or create the Secret
// at startup (the API server or the RBAC may come up a moment later).
const loadTimeout = time.Minute

// ListenAndServe listens on addr and serves until ctx ends.
func (s *Service) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("token service: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve loads the signing key (creating the Secret when missing), then
// serves on ln until ctx ends, re-reading the Secret meanwhile.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	if err := s.loadAtStart(ctx); err != nil {
		return err
	}
	interval := s.ReloadInterval
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	go s.Keys.Keep(ctx, interval)

	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
	}
	scheme := "http"
	if s.CertFile != "" {
		// In the webhook's self-managed TLS mode the files appear a moment
		// after the start.
		if err := waitForFiles(ctx, s.CertFile, s.KeyFile); err != nil {
			return fmt.Errorf("token service TLS: %w", err)
		}
		cw, err := certwatcher.New(s.CertFile, s.KeyFile)
		if err != nil {
			return fmt.Errorf("token service TLS: %w", err)
		}
		go func() {
			if err := cw.Start(ctx); err != nil {
				s.Log.Error(err, "watching the token service certificate")
			}
		}()
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.Log.Info("registry token service serving", "address", scheme+"://"+ln.Addr().String()+TokenPath,
		"service", s.Handler.Service, "issuer", s.Handler.Issuer, "ttl", s.Handler.TTL.String(),
		"repositoryPrefix", s.Handler.RepositoryPrefix, "kid", s.Keys.Signing().KID)
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return fmt.Errorf("token service: %w", err)
}

func (s *Service) loadAtStart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	delay := 500 * time.Millisecond
	for {
		err := s.Keys.Load(ctx)
		if err == nil {
			return nil
		}
		s.Log.Error(err, "loading the token signing key; retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("token service: loading the signing key: %w", err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 8*time.Second)
	}
}

func waitForFiles(ctx context.Context, paths ...string) error {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	for _, p := range paths {
		for {
			_, err := os.Stat(p)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}
