package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A registry that fails every attempt with a 5xx (zot with a full disk
// answers a bare 500) fails the push with exit 1, and the message says
// where the cause is, not only the status.
func TestPushServerErrorSaysWhereToLook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound) // no blob yet
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	err := pushOneFileTo(t, srv)
	if err == nil {
		t.Fatal("the push succeeded against a registry that fails every request")
	}
	if ExitCode(err) != ExitFailed {
		t.Errorf("exit %d, want %d: %v", ExitCode(err), ExitFailed, err)
	}
	for _, want := range []string{"after 3 attempts", "500", "its own log says why"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in: %v", want, err)
		}
	}
}

// A registry whose storage fills while a blob streams in may keep fewer
// bytes and answer the upload's last request 400 DIGEST_INVALID (zot on a
// full volume, seen in the registry-full fault): the push fails at once
// (a 4xx) and says the registry's storage, not the step, is the suspect.
func TestPushDigestInvalidSaysWhereToLook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound) // no blob yet
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "/v2/full/disk/blobs/uploads/u1")
			w.WriteHeader(http.StatusAccepted)
		default: // the upload's PATCH or PUT: stored short
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}`))
		}
	}))
	defer srv.Close()
	err := pushOneFileTo(t, srv)
	if err == nil {
		t.Fatal("the push succeeded against a registry that keeps other bytes")
	}
	for _, want := range []string{"400", "DIGEST_INVALID", "its storage may be full or failing, its own log says why"} {
		if !strings.Contains(strings.ReplaceAll(err.Error(), "digest invalid", "DIGEST_INVALID"), want) {
			t.Errorf("no %q in: %v", want, err)
		}
	}
}

// pushOneFileTo pushes a one-file workspace to the test server srv, with
// short retries, and returns the push's error.
func pushOneFileTo(t *testing.T, srv *httptest.Server) error {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Registry: strings.TrimPrefix(srv.URL, "http://"), Repository: "full/disk", PlainHTTP: true, Retries: 2, RetryBaseDelay: 10 * time.Millisecond, Log: testLogger(t)}
	_, err := Push(context.Background(), PushOptions{Options: o, Tag: "t", Task: "t", Mounts: []Mount{{Dir: src}}, StateDir: t.TempDir()})
	return err
}
