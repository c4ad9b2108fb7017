package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
)

// uploadTree is a workspace whose layers (512 KiB each) are bigger than the
// 64 KiB chunks of the tests, one of them one file.
func uploadTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	for i := range 3 {
		randomFile(t, filepath.Join(src, "bin", "r"+strconv.Itoa(i)), 700<<10, uint64(40+i))
	}
	writeFile(t, filepath.Join(src, "log.txt"), strings.Repeat("a compressible line of a build log 0123456789\n", 40000), 0o644)
	for i := range 300 {
		writeFile(t, filepath.Join(src, "src", strconv.Itoa(i%7), strconv.Itoa(i)+".go"), "package p // "+strconv.Itoa(i)+"\n", 0o644)
	}
	writeFile(t, filepath.Join(src, "tiny"), "x", 0o644)
	return src
}

const testChunk = 64 << 10

func pushChunked(t *testing.T, o Options, tag, src string) *PushResult {
	t.Helper()
	r, err := Push(context.Background(), PushOptions{Options: o, Tag: tag, Task: tag, Mounts: []Mount{{Dir: src}},
		StateDir: t.TempDir(), LayerSize: 512 << 10, SpoolMemory: testChunk})
	require.NoError(t, err)
	return r
}

func requirePulled(t *testing.T, o Options, tag, src string) {
	t.Helper()
	dst := t.TempDir()
	_, err := Pull(context.Background(), PullOptions{Options: o, From: []string{tag}, Mounts: []Mount{{Dir: dst}}, StateDir: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, snapshot(t, src), snapshot(t, dst))
}

// streamsRefused answers a PATCH without Content-Range as a registry that
// wants every chunk's length does (GitLab's answered docker's streamed
// blobs this way), so the push goes on in chunks.
func streamsRefused(w http.ResponseWriter, r *http.Request, _ int) bool {
	if r.Method != http.MethodPatch || r.Header.Get("Content-Range") != "" {
		return false
	}
	registryError(w, http.StatusBadRequest, "SIZE_INVALID", "Content-Length required")
	return true
}

// Layers bigger than the buffer are uploaded while they are compressed, on
// both registries the project runs against, streamed or (when the registry
// refuses streams) in chunks; the layer that fits in the buffer is
// uploaded whole; an unchanged layer pushed again is not stored again.
func TestChunkedUpload(t *testing.T) {
	for _, name := range []string{"distribution", "zot"} {
		for _, mode := range []string{"stream", "chunks"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				addr := ""
				if name == "zot" {
					z, err := testenv.StartZot(testenv.ZotBin(t))
					require.NoError(t, err)
					defer z.Close()
					addr = z.Addr()
				} else {
					addr = needRegistry(t).addr
				}
				var logs logBuffer
				var answer func(http.ResponseWriter, *http.Request, int) bool
				if mode == "chunks" {
					answer = streamsRefused
				}
				p := newChunkProxy(t, addr, answer)
				o := p.opts(t, "chunked/"+mode)
				o.Log = slog.New(slog.NewTextHandler(&logs, nil))
				src := uploadTree(t)
				r := pushChunked(t, o, "a", src)
				require.Greater(t, r.Layers, 3)
				require.Equal(t, r.Layers, r.Uploaded)
				require.Greater(t, r.Streamed, 2, "the big layers are sent while compressed")
				require.Less(t, r.Streamed, r.Layers, "the last, small layer is uploaded whole")
				if mode == "stream" {
					require.Equal(t, r.Streamed, p.count(http.MethodPatch), "one PATCH per layer")
					require.NotContains(t, logs.String(), "refuses")
				} else {
					require.Greater(t, p.count(http.MethodPatch), 3*r.Streamed, "64 KiB chunks")
					require.Equal(t, 1, strings.Count(logs.String(), "refuses"), logs.String())
					require.Contains(t, logs.String(), "refused=stream next=chunks")
				}
				requirePulled(t, o, "a", src)

				again := pushChunked(t, o, "b", src)
				require.Equal(t, r.Streamed, again.Streamed)
				require.Zero(t, again.Uploaded, "the registry has every layer: none is committed again")
			})
		}
	}
}

// chunkProxy stands between the push and the real registry; answer, when
// it returns true, has answered the request itself (n counts the requests
// of its method).
type chunkProxy struct {
	t      *testing.T
	addr   string
	mu     sync.Mutex
	counts map[string]int // method -> requests
	answer func(w http.ResponseWriter, r *http.Request, n int) bool
}

func newChunkProxy(t *testing.T, target string, answer func(w http.ResponseWriter, r *http.Request, n int) bool) *chunkProxy {
	p := &chunkProxy{t: t, counts: map[string]int{}, answer: answer}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[r.Method]++
		n := p.counts[r.Method]
		p.mu.Unlock()
		if p.answer != nil && p.answer(w, r, n) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.addr = srv.Listener.Addr().String()
	return p
}

func (p *chunkProxy) count(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[method]
}

func (p *chunkProxy) opts(t *testing.T, repo string) Options {
	return (&registryProc{addr: p.addr}).opts(t, repo)
}

// logBuffer collects a push's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// A registry that refuses PATCH (streams and chunks alike) gets every layer
// whole, spooled in the state directory, with a warning per lowered mode;
// one that refuses streams only gets chunks. The push neither fails nor
// waits for a retry.
func TestUploadFallsBack(t *testing.T) {
	reg := needRegistry(t)
	for _, c := range []struct {
		name     string
		status   int
		code     string
		streams  bool // only PATCH without Content-Range is refused
		fallback string
	}{
		{"PATCH not allowed", http.StatusMethodNotAllowed, "UNSUPPORTED", false, "whole"},
		{"no Content-Length taken", http.StatusBadRequest, "SIZE_INVALID", false, "whole"},
		{"ranges refused", http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", false, "whole"},
		{"body limit of a proxy", http.StatusRequestEntityTooLarge, "SIZE_INVALID", true, "chunks"},
		{"streams not implemented", http.StatusNotImplemented, "UNSUPPORTED", true, "chunks"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newChunkProxy(t, reg.addr, func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if r.Method != http.MethodPatch || c.streams && r.Header.Get("Content-Range") != "" {
					return false
				}
				registryError(w, c.status, c.code, "not this way")
				return true
			})
			var logs logBuffer
			o := p.opts(t, "refused/"+strconv.Itoa(c.status))
			o.Log = slog.New(slog.NewTextHandler(&logs, nil))
			src := uploadTree(t)
			state := t.TempDir()
			r, err := Push(context.Background(), PushOptions{Options: o, Tag: "a", Task: "a", Mounts: []Mount{{Dir: src}},
				StateDir: state, LayerSize: 512 << 10, SpoolMemory: testChunk})
			require.NoError(t, err, logs.String())
			require.Equal(t, r.Layers, r.Uploaded)
			require.NotContains(t, logs.String(), "retrying", logs.String())
			require.Contains(t, logs.String(), "refused=stream next=chunks")
			if c.fallback == "whole" {
				require.Zero(t, r.Streamed)
				require.Contains(t, logs.String(), "refused=chunks next=whole")
			} else {
				require.Greater(t, r.Streamed, 2)
				require.NotContains(t, logs.String(), "next=whole")
			}
			ents, err := os.ReadDir(state)
			require.NoError(t, err)
			require.Empty(t, ents, "spool files are unlinked")
			requirePulled(t, reg.opts(t, o.Repository), "a", src)
		})
	}
}

// A registry that asks for chunks bigger than the budget gives (the OCI
// spec's OCI-Chunk-Min-Length) gets whole layers.
func TestChunkMinLengthOverTheBudget(t *testing.T) {
	reg := needRegistry(t)
	p := newChunkProxy(t, reg.addr, func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method == http.MethodPost {
			w.Header().Set("OCI-Chunk-Min-Length", strconv.Itoa(64<<20))
		}
		return streamsRefused(w, r, n)
	})
	o := p.opts(t, "minchunk/repo")
	src := uploadTree(t)
	r := pushChunked(t, o, "a", src)
	require.Zero(t, r.Streamed)
	require.LessOrEqual(t, p.count(http.MethodPatch), 4, "a refused stream per layer in flight at most")
	requirePulled(t, o, "a", src)
}

// An upload that breaks is retried: a chunk that fails (the connection
// drops, the registry answers 503) is sent again in its session; a stream
// that breaks, or a session the registry forgot, makes the layer be
// written and uploaded again from the start, in a new session.
func TestBrokenUploadIsRetried(t *testing.T) {
	reg := needRegistry(t)
	for _, mode := range []string{"stream", "chunks"} {
		for _, c := range []struct {
			name          string
			chunkSessions int // new sessions in chunks mode (a stream always needs one)
			answer        func(w http.ResponseWriter, r *http.Request)
		}{
			{"connection dropped", 0, func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			}},
			{"session forgotten", 1, func(w http.ResponseWriter, r *http.Request) {
				registryError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
			}},
			{"registry error", 0, func(w http.ResponseWriter, r *http.Request) {
				registryError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "try later")
			}},
		} {
			t.Run(mode+"/"+c.name, func(t *testing.T) {
				var broke atomic.Bool
				patches := 0
				p := newChunkProxy(t, reg.addr, func(w http.ResponseWriter, r *http.Request, n int) bool {
					if mode == "chunks" && streamsRefused(w, r, n) {
						return true
					}
					if r.Method != http.MethodPatch {
						return false
					}
					// the second PATCH that gets through: in chunks mode a
					// later chunk of a session that has taken one
					if patches++; patches != 2 || !broke.CompareAndSwap(false, true) {
						return false
					}
					c.answer(w, r)
					return true
				})
				// a new repository each run: the config blob is pushed too
				o := p.opts(t, "broken/"+mode+"/"+strings.ReplaceAll(c.name, " ", "-")+"/"+strconv.FormatInt(time.Now().UnixNano(), 36))
				o.Concurrency = 1
				src := uploadTree(t)
				r := pushChunked(t, o, "a", src)
				require.True(t, broke.Load())
				require.Equal(t, r.Layers, r.Uploaded)
				// a session per layer, one for the config, and in chunks
				// mode the first, refused, stream's
				sessions := r.Layers + 2 + c.chunkSessions
				if mode == "stream" {
					sessions = r.Layers + 2
				}
				require.Equal(t, sessions, p.count(http.MethodPost))
				requirePulled(t, o, "a", src)
			})
		}
	}
}

// The registry is stopped while layers are being streamed and restarted a
// second later: the sessions it had are gone, the layers are uploaded
// again.
func TestRegistryStoppedMidStream(t *testing.T) {
	needRegistry(t)
	reg, err := startRegistry(os.Getenv("REGISTRY_BIN"), "")
	require.NoError(t, err)
	defer reg.close()
	src := uploadTree(t)
	var once sync.Once
	restarted := make(chan error, 1)
	testHookBlobPushed = func() {
		once.Do(func() {
			reg.stop()
			go func() { time.Sleep(time.Second); restarted <- reg.start() }()
		})
	}
	defer func() { testHookBlobPushed = nil }()
	o := reg.opts(t, "mid/stream")
	o.Retries = 8
	r := pushChunked(t, o, "t", src)
	require.NoError(t, <-restarted)
	require.Greater(t, r.Streamed, 2)
	requirePulled(t, reg.opts(t, "mid/stream"), "t", src)
}

// tokenServer is a Docker token service (the protocol CNCF Distribution's
// token auth and the oras-go client speak): it grants what is asked to
// user tekton, in ES256 JWTs whose x5c header carries its certificate.
type tokenServer struct {
	url, certFile string
	mu            sync.Mutex
	scopes        []string
}

func startTokenServer(t *testing.T, dir string) *tokenServer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "token-signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ts := &tokenServer{certFile: filepath.Join(dir, "token-signer.pem")}
	require.NoError(t, os.WriteFile(ts.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	b64 := base64.RawURLEncoding.EncodeToString
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "tekton" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var access []map[string]any
		for _, s := range r.URL.Query()["scope"] {
			ts.mu.Lock()
			ts.scopes = append(ts.scopes, s)
			ts.mu.Unlock()
			parts := strings.Split(s, ":")
			if len(parts) != 3 {
				continue
			}
			access = append(access, map[string]any{"type": parts[0], "name": parts[1], "actions": strings.Split(parts[2], ",")})
		}
		now := time.Now().Unix()
		hdr, _ := json.Marshal(map[string]any{"alg": "ES256", "typ": "JWT", "x5c": []string{base64.StdEncoding.EncodeToString(der)}})
		claims, _ := json.Marshal(map[string]any{"iss": "test-issuer", "sub": "tekton", "aud": r.URL.Query().Get("service"),
			"exp": now + 300, "nbf": now - 10, "iat": now, "jti": strconv.FormatInt(time.Now().UnixNano(), 10), "access": access})
		input := b64(hdr) + "." + b64(claims)
		sum := sha256.Sum256([]byte(input))
		sr, ss, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		sig := make([]byte, 64)
		sr.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
		json.NewEncoder(w).Encode(map[string]any{"token": input + "." + b64(sig), "expires_in": 300})
	}))
	t.Cleanup(srv.Close)
	ts.url = srv.URL + "/token"
	return ts
}

// Chunks go through the repository's auth client: against a registry with
// token auth, the pull,push token the POST obtained is reused for every
// chunk (no token request per chunk, no chunk refused).
func TestChunkedUploadWithTokenAuth(t *testing.T) {
	needRegistry(t)
	dir := t.TempDir()
	ts := startTokenServer(t, dir)
	reg, err := startRegistryConfig(os.Getenv("REGISTRY_BIN"), "", "auth:\n  token:\n    realm: "+ts.url+
		"\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: "+ts.certFile+"\n")
	require.NoError(t, err)
	defer reg.close()
	cfg := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"auths":{"`+reg.addr+`":{"auth":"`+
		base64.StdEncoding.EncodeToString([]byte("tekton:s3cret"))+`"}}}`), 0o600))
	var logs logBuffer
	o := reg.opts(t, "token/repo")
	o.DockerConfig = cfg
	o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	src := uploadTree(t)
	r := pushChunked(t, o, "a", src)
	require.Greater(t, r.Streamed, 2, logs.String())
	require.NotContains(t, logs.String(), "does not take this upload in chunks")
	ts.mu.Lock()
	scopes := ts.scopes
	ts.mu.Unlock()
	require.Contains(t, scopes, "repository:token/repo:pull,push")
	require.Less(t, len(scopes), 10, "tokens are cached, not fetched per chunk: %v", scopes)
	o.Log = testLogger(t)
	requirePulled(t, o, "a", src)
}

// Streams over TLS (HTTP/2, which Distribution offers) to a registry with
// basic auth: the client answers the POST's challenge, and the streamed
// bodies, which cannot be sent twice, go with the cached credentials.
func TestStreamedUploadOverTLSWithBasicAuth(t *testing.T) {
	needRegistry(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCA(t, dir)
	htpasswd := filepath.Join(dir, "htpasswd")
	require.NoError(t, os.WriteFile(htpasswd, []byte(htpasswdLine), 0o600))
	reg, err := startRegistryConfig(os.Getenv("REGISTRY_BIN"), "",
		"  tls:\n    certificate: "+certFile+"\n    key: "+keyFile+"\nauth:\n  htpasswd:\n    realm: test\n    path: "+htpasswd+"\n")
	require.NoError(t, err)
	defer reg.close()
	cfg := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"auths":{"`+reg.addr+`":{"auth":"`+
		base64.StdEncoding.EncodeToString([]byte("tekton:s3cret"))+`"}}}`), 0o600))
	var logs logBuffer
	o := reg.opts(t, "tls/repo")
	o.PlainHTTP, o.CAFile, o.DockerConfig = false, caFile, cfg
	o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	src := uploadTree(t)
	r := pushChunked(t, o, "a", src)
	require.Greater(t, r.Streamed, 2, logs.String())
	require.NotContains(t, logs.String(), "refuses")
	require.NotContains(t, logs.String(), "retrying")
	o.Log = testLogger(t)
	requirePulled(t, o, "a", src)
}
