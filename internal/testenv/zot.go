package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ZotBin finds the zot binary the chart installs (v2.1.20, built from its
// public source; the module is not served by the Go module proxy here) as
// ../shared/zot/README.md says: $ZOT_BIN, else shared/zot/zot beside the
// clone. Without it the test skips, or fails under CI.
func ZotBin(t testing.TB) string {
	t.Helper()
	if v := os.Getenv("ZOT_BIN"); v != "" {
		return v
	}
	if root, err := repoRoot(); err == nil {
		p := filepath.Join(filepath.Dir(root), "shared", "zot", "zot")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := "zot not found: set ZOT_BIN, or put the zot v2.1.20 binary at ../shared/zot/zot beside the clone (see ../shared/zot/README.md)"
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// repoRoot is the directory of the module's go.mod, found upwards from the
// working directory (a package directory under go test).
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		d = parent
	}
}

// ZotOptions configures StartZotWith.
type ZotOptions struct {
	// Auth is zot's http.auth object (JSON), e.g. {"bearer": {...}}; empty:
	// none.
	Auth string
}

// StartZot starts a zot registry on a free 127.0.0.1 port with its storage
// in a new temporary directory (no GC: the tests decide what is deleted).
// The returned Registry stops, restarts and closes like a Distribution one.
func StartZot(bin string) (*Registry, error) { return StartZotWith(bin, ZotOptions{}) }

// StartZotWith is StartZot with options.
func StartZotWith(bin string, o ZotOptions) (*Registry, error) {
	d, err := os.MkdirTemp("", "oci-transport-zot-")
	if err != nil {
		return nil, err
	}
	r := &Registry{bin: bin, dir: d, ownDir: true, config: "config.json"}
	addr, err := FreeAddr()
	if err != nil {
		r.Close()
		return nil, err
	}
	r.addr = addr
	host, port, _ := strings.Cut(addr, ":")
	auth := ""
	if o.Auth != "" {
		auth = `, "auth": ` + o.Auth
	}
	cfg := fmt.Sprintf(`{"distSpecVersion": "1.1.1",
  "storage": {"rootDirectory": %q, "gc": false, "dedupe": false},
  "http": {"address": %q, "port": %q%s},
  "log": {"level": "error"}}
`, filepath.Join(d, "data"), host, port, auth)
	return r.configureAndStart(cfg)
}
