package transport

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
)

// The integration tests run against a real CNCF Distribution registry
// (REGISTRY_BIN, built by hack/tools.sh) on 127.0.0.1, one per package.
// Without REGISTRY_BIN they skip, unless under CI, where they fail.

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
	testenv.Require(t, "REGISTRY_BIN", "the integration tests run against a real registry")
	return shared
}

// needBin returns the binary the environment variable names, or skips
// (fails under CI).
func needBin(t testing.TB, env string) string {
	t.Helper()
	return testenv.Require(t, env, "the interoperability test runs the real "+strings.ToLower(strings.TrimSuffix(env, "_BIN")))
}

// registryProc is a testenv.Registry with the names and options the tests
// of this package use.
type registryProc struct {
	*testenv.Registry
	addr, dir string
}

// startRegistry starts a registry on a free port with its storage in a new
// temporary directory (or dir).
func startRegistry(bin, dir string) (*registryProc, error) {
	return startRegistryConfig(bin, dir, "")
}

// startRegistryConfig starts a registry with extra lines under http:.
func startRegistryConfig(bin, dir, httpExtra string) (*registryProc, error) {
	r, err := testenv.StartRegistry(bin, testenv.RegistryOptions{Dir: dir, HTTPExtra: httpExtra})
	if err != nil {
		return nil, err
	}
	return &registryProc{Registry: r, addr: r.Addr(), dir: r.Dir()}, nil
}

func (r *registryProc) start() error { return r.Start() }
func (r *registryProc) stop()        { r.Stop() }
func (r *registryProc) close()       { r.Close() }

func freePort() (string, error) { return testenv.FreeAddr() }

func (r *registryProc) opts(t testing.TB, repo string) Options {
	return Options{Registry: r.addr, Repository: repo, PlainHTTP: true, Retries: 3, RetryBaseDelay: 50 * time.Millisecond, Log: testLogger(t)}
}
