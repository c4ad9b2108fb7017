// Package testenv is the plumbing the tests share to reach the real
// components `make test` builds (hack/tools.sh): the environment variables
// that point at them, and a real CNCF Distribution registry on 127.0.0.1.
// Only _test.go files import it.
package testenv

import (
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

	"golang.org/x/crypto/bcrypt"
)

// InCI reports whether the tests run under CI (CI set, and not "false" or
// "0"), where a missing component fails a test instead of skipping it.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Require returns the environment variable name, which points at a real
// component; when it is not set, it skips the test, or fails it under CI.
// what says what needs it.
func Require(t testing.TB, name, what string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	msg := fmt.Sprintf("%s is not set: %s; run `make test`, which builds it (hack/tools.sh)", name, what)
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// Dir holds the configuration, the log and the storage; empty: a new
	// temporary directory, removed by Close.
	Dir string
	// HTTPExtra is added under http: (indented), e.g. a tls: section.
	HTTPExtra string
	// Auth, when set, makes the registry check these credentials (htpasswd).
	Auth *Credentials
	// Extra is added to the configuration at the top level, e.g. an auth:
	// token: section.
	Extra string
}

// Credentials are a user name and password.
type Credentials struct{ Username, Password string }

// Registry is a running CNCF Distribution registry (REGISTRY_BIN), or zot
// (StartZot).
type Registry struct {
	bin, dir, addr string
	ownDir, tls    bool
	config         string // in dir; "" = config.yml
	mu             sync.Mutex
	cmd            *exec.Cmd
}

// StartRegistry starts bin on a free 127.0.0.1 port and waits until it
// answers.
func StartRegistry(bin string, o RegistryOptions) (*Registry, error) {
	r := &Registry{bin: bin, dir: o.Dir, tls: strings.Contains(o.HTTPExtra, "tls:")}
	if r.dir == "" {
		d, err := os.MkdirTemp("", "oci-transport-registry-")
		if err != nil {
			return nil, err
		}
		r.dir, r.ownDir = d, true
	}
	addr, err := FreeAddr()
	if err != nil {
		r.Close()
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
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(r.dir, "data"), addr, o.HTTPExtra)
	if o.Auth != nil {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.Auth.Password), bcrypt.MinCost)
		if err != nil {
			r.Close()
			return nil, err
		}
		htpasswd := filepath.Join(r.dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(o.Auth.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			r.Close()
			return nil, err
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
	}
	return r.configureAndStart(cfg + o.Extra)
}

// configureAndStart writes the registry's configuration and starts it; on
// failure everything is cleaned up.
func (r *Registry) configureAndStart(cfg string) (*Registry, error) {
	config := r.config
	if config == "" {
		config = "config.yml"
	}
	if err := os.WriteFile(filepath.Join(r.dir, config), []byte(cfg), 0o644); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.Start(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Addr is the registry's host:port.
func (r *Registry) Addr() string { return r.addr }

// Dir holds config.yml, registry.log and the storage (data/).
func (r *Registry) Dir() string { return r.dir }

// Logs returns what the registry has logged so far.
func (r *Registry) Logs() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	return string(b)
}

// Start (re)starts the registry on the same address and storage, and waits
// until it answers. It does nothing when the registry runs.
func (r *Registry) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(r.dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	config := r.config
	if config == "" {
		config = "config.yml"
	}
	cmd := exec.Command(r.bin, "serve", filepath.Join(r.dir, config))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	r.cmd = cmd
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r.tls {
			// Up when it listens; the callers' clients check the TLS.
			if conn, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
				conn.Close()
				return nil
			}
			continue
		}
		// Any answer is up, 401 too when it checks credentials.
		if resp, err := http.Get("http://" + r.addr + "/v2/"); err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return fmt.Errorf("registry did not answer on %s:\n%s", r.addr, r.Logs())
}

// Stop kills the registry; Start brings it back.
func (r *Registry) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Close stops the registry and removes its directory if StartRegistry made it.
func (r *Registry) Close() {
	r.Stop()
	if r.ownDir {
		_ = os.RemoveAll(r.dir)
	}
}

// FreeAddr returns a 127.0.0.1 host:port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
