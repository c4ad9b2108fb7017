package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// The classifier decides on real errors, as the http client, the sockets
// and oras-go make them, wrapped the way withRetry's callers wrap them; a
// message that only reads like a network failure is not one.
func TestRetryable(t *testing.T) {
	cases := []struct {
		name string
		err  func(t *testing.T) error
		want bool
		is   error // what the error must be too, so that the case makes what it says
	}{
		{"refused port", func(t *testing.T) error { return get(t, context.Background(), "http://"+closedAddr(t)+"/v2/") }, true, syscall.ECONNREFUSED},
		// The http client says "server closed idle connection", an
		// unexported error: the *url.Error around it decides.
		{"listener closes every connection", func(t *testing.T) error {
			return get(t, context.Background(), "http://"+listen(t, func(c net.Conn) { c.Close() })+"/v2/")
		}, true, nil},
		{"listener resets the connection", func(t *testing.T) error {
			return get(t, context.Background(), "http://"+listen(t, func(c net.Conn) {
				_, _ = http.ReadRequest(bufio.NewReader(c))
				_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
				c.Close()
			})+"/v2/")
		}, true, syscall.ECONNRESET},
		{"body cut short", func(t *testing.T) error {
			return get(t, context.Background(), "http://"+listen(t, func(c net.Conn) {
				_, _ = http.ReadRequest(bufio.NewReader(c))
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.")
				c.Close()
			})+"/v2/")
		}, true, io.ErrUnexpectedEOF},
		{"read deadline on a silent connection", func(t *testing.T) error {
			c, err := net.Dial("tcp", listen(t, func(c net.Conn) { time.Sleep(time.Second); c.Close() }))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			_, err = c.Read(make([]byte, 1))
			return err
		}, true, os.ErrDeadlineExceeded},
		{"oras-go fetch from a refused port", func(t *testing.T) error {
			return orasFetch(t, context.Background(), closedAddr(t))
		}, true, syscall.ECONNREFUSED},
		{"registry 500", func(t *testing.T) error { return orasFetch(t, context.Background(), answering(t, 500)) }, true, nil},
		{"registry 503", func(t *testing.T) error { return orasFetch(t, context.Background(), answering(t, 503)) }, true, nil},
		{"registry 429", func(t *testing.T) error { return orasFetch(t, context.Background(), answering(t, 429)) }, true, nil},
		{"registry 408", func(t *testing.T) error { return orasFetch(t, context.Background(), answering(t, 408)) }, true, nil},
		{"registry 404", func(t *testing.T) error { return orasFetch(t, context.Background(), answering(t, 404)) }, false, nil},
		{"registry 400", func(t *testing.T) error { return orasFetch(t, context.Background(), answering(t, 400)) }, false, nil},
		{"registry 403", func(t *testing.T) error { return orasFetch(t, context.Background(), answering(t, 403)) }, false, nil},
		{"cancelled request", func(t *testing.T) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return orasFetch(t, ctx, answering(t, 200))
		}, false, context.Canceled},
		{"request past its context's deadline", func(t *testing.T) error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			return get(t, ctx, "http://"+listen(t, func(c net.Conn) { time.Sleep(time.Second); c.Close() })+"/v2/")
		}, false, context.DeadlineExceeded},
		{"untrusted TLS certificate", func(t *testing.T) error {
			srv := httptest.NewTLSServer(http.NotFoundHandler())
			t.Cleanup(srv.Close)
			return get(t, context.Background(), srv.URL+"/v2/")
		}, false, nil},
		{"a tag list page gone", func(*testing.T) error { return &pageGoneError{page: 2, err: errors.New("404")} }, true, nil},
		{"upload session lost", func(*testing.T) error { return &sessionLostError{msg: "404"} }, true, nil},
		{"refused content", func(*testing.T) error { return refuse("x", "digest mismatch") }, false, nil},
		{"usage", func(*testing.T) error { return usagef("--registry is required") }, false, nil},
		{"a message that reads like a connection failure", func(*testing.T) error {
			return errors.New("read tcp: connection reset by peer: EOF")
		}, false, nil},
		{"a filesystem error", func(*testing.T) error { return fmt.Errorf("write: %w", syscall.ENOSPC) }, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.err(t)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("%T: %v", err, err)
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("the error is not %v", c.is)
			}
			for _, e := range []error{err, fmt.Errorf("push blob sha256:1: %w", err), errors.Join(errors.New("other"), err)} {
				if got := retryable(e); got != c.want {
					t.Errorf("retryable(%v) = %v, want %v", e, got, c.want)
				}
			}
		})
	}
	if retryable(nil) {
		t.Error("nil is retryable")
	}
}

// withRetry stops when its context is over even when the error alone would
// be retried: a deadline met while dialing is a net timeout too.
func TestWithRetryStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{opts: &Options{Retries: 5, RetryBaseDelay: time.Millisecond, Log: testLogger(t)}}
	calls := 0
	err := c.withRetry(ctx, "op", func() error {
		calls++
		cancel()
		return &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	})
	if calls != 1 || err == nil {
		t.Fatalf("%d calls, err %v; want 1 call and an error", calls, err)
	}
}

// get sends GET url and reads the whole body, returning the error.
func get(t *testing.T, ctx context.Context, url string) error {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}

// orasFetch fetches a blob with oras-go from addr, as pullLayer does.
func orasFetch(t *testing.T, ctx context.Context, addr string) error {
	t.Helper()
	repo, err := remote.NewRepository(addr + "/a/b")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	repo.Client = &http.Client{} // no retries of its own: one attempt, one error
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromString("x"), Size: 1}
	rc, err := repo.Blobs().Fetch(ctx, desc)
	if err != nil {
		return err
	}
	rc.Close()
	return errors.New("fetched")
}

// answering is a registry that answers every request with status.
func answering(t *testing.T, status int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// listen serves every connection to a 127.0.0.1 port with handle.
func listen(t *testing.T, handle func(net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l.Addr().String()
}

// closedAddr is a 127.0.0.1 port nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
