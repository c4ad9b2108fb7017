package transport

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The integration tests run against a real CNCF Distribution registry
// (REGISTRY_BIN, built by hack/tools.sh) on 127.0.0.1, one per package.
// Without REGISTRY_BIN they skip, unless CI=true, where they fail.

var shared *registryProc

func TestMain(m *testing.M) {
	code := func() int {
		if bin := os.Getenv("REGISTRY_BIN"); bin != "" {
			r, err := startRegistry(bin, "")
			if err != nil {
				fmt.Fprintln(os.Stderr, "start registry:", err)
				return 1
			}
			defer r.close()
			shared = r
		}
		return m.Run()
	}()
	os.Exit(code)
}

// needRegistry returns the shared registry or skips (fails under CI).
func needRegistry(t testing.TB) *registryProc {
	t.Helper()
	if shared == nil {
		if os.Getenv("CI") != "" {
			t.Fatal("REGISTRY_BIN is not set but CI is: run the tests through `make test`")
		}
		t.Skip("REGISTRY_BIN is not set: skipping the test against a real registry (run `make test`)")
	}
	return shared
}

func needBin(t testing.TB, env string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set but CI is: run the tests through `make test`", env)
		}
		t.Skipf("%s is not set: skipping (run `make test`)", env)
	}
	return bin
}

type registryProc struct {
	bin, dir, addr string
	mu             sync.Mutex
	cmd            *exec.Cmd
	ownDir         bool
	tls            bool
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startRegistry starts a registry on a free port with its storage in a new
// temporary directory (or dir).
func startRegistry(bin, dir string) (*registryProc, error) {
	return startRegistryConfig(bin, dir, "")
}

// startRegistryConfig starts a registry with extra lines under http:.
func startRegistryConfig(bin, dir, httpExtra string) (*registryProc, error) {
	r := &registryProc{bin: bin, dir: dir, tls: strings.Contains(httpExtra, "tls:")}
	if dir == "" {
		d, err := os.MkdirTemp("", "oci-transport-registry-")
		if err != nil {
			return nil, err
		}
		r.dir, r.ownDir = d, true
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	r.addr = addr
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s/data
  delete:
    enabled: true
http:
  addr: %s
%s`, r.dir, addr, httpExtra)
	if err := os.WriteFile(filepath.Join(r.dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return r, r.start()
}

func (r *registryProc) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(r.dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.bin, "serve", filepath.Join(r.dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	r.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			conn.Close()
			if r.tls {
				return nil
			}
		}
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("registry did not answer on %s", r.addr)
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

func (r *registryProc) close() {
	r.stop()
	if r.ownDir {
		os.RemoveAll(r.dir)
	}
}

func (r *registryProc) opts(t testing.TB, repo string) Options {
	return Options{Registry: r.addr, Repository: repo, PlainHTTP: true, Retries: 3, RetryBaseDelay: 50 * time.Millisecond, Log: testLogger(t)}
}

var _ = context.Background
