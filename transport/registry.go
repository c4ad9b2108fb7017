package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// The defaults of the options common to push and pull; the step's flags
// default to them. An Options with zero Concurrency or RetryBaseDelay gets
// these; zero Retries means no retries (tests), so the step passes
// DefaultRetries.
const (
	DefaultConcurrency = 4
	// DefaultRetries: 8 attempts after the first, backing off 0.25 s
	// doubling to MaxRetryDelay, about 32 s in all: a registry pod that is
	// restarted is waited out (a zot member of the scale-out cluster came
	// back in 16-17 s on the test bed, which 6 retries, about 16 s, only
	// just covered).
	DefaultRetries        = 8
	DefaultRetryBaseDelay = 250 * time.Millisecond
	// MaxRetryDelay caps the backoff between attempts.
	MaxRetryDelay = 8 * time.Second
)

// Options are the flags common to push and pull.
type Options struct {
	Registry     string // host[:port]
	Repository   string // path without host
	PlainHTTP    bool
	CAFile       string
	DockerConfig string // docker config.json with credentials; "" = none
	Concurrency  int    // layers in flight
	Retries      int    // attempts after the first, per request
	// RetryBaseDelay is the first backoff delay (doubles each attempt, capped at MaxRetryDelay).
	RetryBaseDelay time.Duration
	Log            *slog.Logger
	// TokenFile is a ServiceAccount token file (projected with the token
	// service's audience) sent as the Basic password to the realm the
	// registry names, re-read on every token request since the kubelet
	// rotates it. For Registry it replaces DockerConfig; "" = none.
	TokenFile string
}

func (o *Options) setDefaults() error {
	if o.Registry == "" {
		return usagef("--registry is required")
	}
	if o.Repository == "" {
		return usagef("--repository is required")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = DefaultRetryBaseDelay
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// DefaultDockerConfig is $DOCKER_CONFIG/config.json when it exists, else
// $HOME/.docker/config.json when it exists: Tekton's credential
// initialization copies the ServiceAccount's docker secrets there (HOME is
// /tekton/home in a step), so a step finds them without a flag.
func DefaultDockerConfig() string {
	var dirs []string
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		dirs = append(dirs, d)
	}
	if h := os.Getenv("HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, ".docker"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "config.json")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

type client struct {
	opts *Options
	repo *remote.Repository
}

func newClient(o *Options) (*client, error) {
	repo, err := remote.NewRepository(o.Registry + "/" + o.Repository)
	if err != nil {
		return nil, usagef("registry/repository %s/%s: %v", o.Registry, o.Repository, err)
	}
	repo.PlainHTTP = o.PlainHTTP
	repo.TagListPageSize = tagListPageSize
	repo.SkipReferrersGC = true
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      256 << 10,
		ForceAttemptHTTP2:   true,
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, usagef("--ca-file: %v", err)
		}
		pool, _ := x509.SystemCertPool()
		if pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--ca-file %s: no certificate found", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// One quick in-transport retry for blips on rewindable requests; the
	// real retry loop with backoff is ours (withRetry), because blob upload
	// bodies are not rewound by the retry transport.
	rt := retry.NewTransport(tr)
	rt.Policy = func() retry.Policy {
		return &retry.GenericPolicy{Retryable: retry.DefaultPredicate, Backoff: retry.DefaultBackoff,
			MinWait: 100 * time.Millisecond, MaxWait: time.Second, MaxRetry: 1}
	}
	ac := &auth.Client{Client: &http.Client{Transport: rt}, Cache: auth.NewCache()}
	ac.SetUserAgent("oci-transport-step")
	if o.DockerConfig != "" {
		store, err := credentials.NewStore(o.DockerConfig, credentials.StoreOptions{})
		if err != nil {
			return nil, usagef("--docker-config %s: %v", o.DockerConfig, err)
		}
		ac.Credential = credentials.Credential(store)
	}
	if o.TokenFile != "" {
		if _, err := readTokenFile(o.TokenFile); err != nil {
			return nil, usagef("%v", err)
		}
		ac.Credential = tokenFileCredential(o.Registry, o.TokenFile, ac.Credential)
	}
	repo.Client = ac
	return &client{opts: o, repo: repo}, nil
}

// retryable reports whether err is worth another attempt: the registry
// said so (a 5xx, 429 or 408 answer), or the request failed on its way
// without an answer (refused, reset or closed connections, timeouts, a
// body cut short). It is decided on the error's types, never its text.
// Our own verdicts, TLS trust, a missing object and a cancelled or expired
// context are final. withRetry stops anyway once its context is over,
// because a network timeout and a context deadline look alike (net's
// timeout error is context.DeadlineExceeded too).
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var r *RefusedError
	var u *UsageError
	var miss *MissingError
	if errors.As(err, &r) || errors.As(err, &u) || errors.As(err, &miss) {
		return false
	}
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		return false // TLS trust is not going to fix itself
	}
	var pg *pageGoneError
	var sl *sessionLostError
	if errors.As(err, &pg) || errors.As(err, &sl) {
		return true // started over from the first page, or a new session
	}
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests || er.StatusCode == http.StatusRequestTimeout
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return false
	}
	return transientNetwork(err)
}

// transientNetworkErrnos are the socket errors of a registry restarting,
// a connection dropped, or a route not there yet.
var transientNetworkErrnos = []syscall.Errno{
	syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
	syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
}

// transientNetwork reports whether err is a request that failed between us
// and the registry: something a new connection may not meet again.
func transientNetwork(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true // the body or the connection ended early
	}
	for _, e := range transientNetworkErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true // a dial, read or write failure, its timeouts and DNS included
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return false // a context's deadline (the http client returns it as it is)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true // the TLS handshake's or HTTP/2's own timeouts
	}
	// The http client's error for a request that got no answer: a cause
	// with none of the types above (HTTP/2's connection and stream errors
	// are unexported) is still a failure on the way, worth a new attempt.
	var ue *url.Error
	return errors.As(err, &ue)
}

// serverErrorHint says where to look when the registry failed every
// attempt with a 5xx: only its own log names the cause. zot answers a bare
// 500, no body, when its storage is full ("no space left on device" is in
// its log only), so the status alone would leave a user guessing.
//
// A registry whose storage fills up while a blob streams in may instead
// keep fewer bytes than it was sent and answer the upload's last request
// 400 DIGEST_INVALID (zot on a full volume in the registry-full fault): not
// our bytes, which the digest was computed from, but its storage; said so,
// since "digest invalid" alone points at the client.
func serverErrorHint(err error) string {
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) {
		return ""
	}
	if er.StatusCode >= 500 {
		return "; the registry failed every attempt: its own log says why (zot answers a bare 500 when its storage is full)"
	}
	for _, e := range er.Errors {
		if e.Code == "DIGEST_INVALID" {
			return "; the registry kept other bytes than this step sent (the digest is of what was sent): its storage may be full or failing, its own log says why"
		}
	}
	return ""
}

// withRetry runs fn until it succeeds, fails with a permanent error, or
// the retries are exhausted, with exponential backoff and jitter.
func (c *client) withRetry(ctx context.Context, what string, fn func() error) error {
	delay := c.opts.RetryBaseDelay
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt >= c.opts.Retries || ctx.Err() != nil {
			err = c.explainRefusal(err)
			if err != nil && attempt > 0 {
				err = fmt.Errorf("%s (after %d attempts): %w%s", what, attempt+1, err, serverErrorHint(err))
			} else if err != nil {
				err = fmt.Errorf("%s: %w%s", what, err, serverErrorHint(err))
			}
			return err
		}
		d := delay + time.Duration(rand.Int64N(int64(delay)/5+1))
		c.opts.Log.Warn("retrying", "op", what, "attempt", attempt+1, "in", d.Round(time.Millisecond).String(), "err", err.Error())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		delay = min(delay*2, MaxRetryDelay)
	}
}

// pushBlob uploads content unless the registry has it already.
func (c *client) pushBlob(ctx context.Context, desc ocispec.Descriptor, open func() io.Reader) (uploaded bool, err error) {
	err = c.withRetry(ctx, "push blob "+desc.Digest.String(), func() error {
		ok, err := c.repo.Blobs().Exists(ctx, desc)
		if err != nil {
			return err
		}
		if ok {
			uploaded = false
			return nil
		}
		err = c.repo.Blobs().Push(ctx, desc, open())
		if err != nil && errors.Is(err, errdef.ErrAlreadyExists) {
			return nil
		}
		uploaded = err == nil
		return err
	})
	if err == nil && testHookBlobPushed != nil {
		testHookBlobPushed()
	}
	return uploaded, err
}

// testHookBlobPushed is called after each blob push (tests only).
var testHookBlobPushed func()

// testHookTagPage is called after each page of a tag listing (tests only).
var testHookTagPage func(page int)

// listTags returns all tags of the repository; a repository that does not
// exist yet has none. Only a 404 on the first page means that: zot answers
// 404 for `?last=<a tag deleted meanwhile>`, and a list cut short there
// would look like producers that never pushed, so the listing starts over.
func (c *client) listTags(ctx context.Context) ([]string, error) {
	var tags []string
	err := c.withRetry(ctx, "list tags of "+c.opts.Repository, func() error {
		tags = tags[:0]
		pages := 0
		err := c.repo.Tags(ctx, "", func(t []string) error {
			pages++
			tags = append(tags, t...)
			if testHookTagPage != nil {
				testHookTagPage(pages)
			}
			return nil
		})
		var er *errcode.ErrorResponse
		notFound := errors.As(err, &er) && er.StatusCode == http.StatusNotFound || errors.Is(err, errdef.ErrNotFound)
		switch {
		case notFound && pages == 0:
			tags = nil
			return nil
		case notFound:
			return &pageGoneError{page: pages + 1, err: err}
		}
		return err
	})
	return tags, err
}

// pageGoneError is a 404 in the middle of a tag listing: retried from the
// first page.
type pageGoneError struct {
	page int
	err  error
}

func (e *pageGoneError) Error() string {
	return fmt.Sprintf("tag list page %d vanished (a tag was deleted while listing): %v", e.page, e.err)
}
func (e *pageGoneError) Unwrap() error { return e.err }

// fetchManifest fetches and verifies the manifest a tag points to.
func (c *client) fetchManifest(ctx context.Context, tag string) (ocispec.Descriptor, *ocispec.Manifest, error) {
	var desc ocispec.Descriptor
	var m ocispec.Manifest
	err := c.withRetry(ctx, "fetch manifest "+tag, func() error {
		d, rc, err := c.repo.Manifests().FetchReference(ctx, tag)
		if err != nil {
			return err
		}
		defer rc.Close()
		if d.Size > maxManifestBytes {
			return refuse(tag, "manifest of %d bytes is over the %d limit", d.Size, maxManifestBytes)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
		if err != nil {
			return err
		}
		if int64(len(data)) != d.Size || digest.FromBytes(data) != d.Digest {
			return refuse(tag, "manifest digest mismatch: expected %s (%d bytes), got %s (%d bytes)", d.Digest, d.Size, digest.FromBytes(data), len(data))
		}
		m = ocispec.Manifest{}
		if err := jsonUnmarshal(data, &m); err != nil {
			return refuse(tag, "manifest is not valid JSON: %v", err)
		}
		desc = d
		return nil
	})
	return desc, &m, err
}

// fetchSmallBlob fetches and verifies a small blob (the config).
func (c *client) fetchSmallBlob(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit || desc.Size < 0 {
		return nil, refuse(desc.Digest.String(), "blob of %d bytes is over the %d limit", desc.Size, limit)
	}
	var data []byte
	err := c.withRetry(ctx, "fetch blob "+desc.Digest.String(), func() error {
		rc, err := c.repo.Blobs().Fetch(ctx, desc)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err = io.ReadAll(io.LimitReader(rc, desc.Size+1))
		if err != nil {
			return err
		}
		if int64(len(data)) != desc.Size || digest.FromBytes(data) != desc.Digest {
			return refuse(desc.Digest.String(), "blob digest mismatch")
		}
		return nil
	})
	return data, err
}

// tagListPageSize is the page size asked of the tags/list API (tests lower it).
var tagListPageSize = 1000
