package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var registryAddr string

// TestMain starts a real registry (REGISTRY_BIN) for the CLI contract tests.
func TestMain(m *testing.M) {
	os.Exit(func() int {
		if bin := os.Getenv("REGISTRY_BIN"); bin != "" {
			stop, addr, err := startRegistry(bin)
			if err != nil {
				fmt.Fprintln(os.Stderr, "start registry:", err)
				return 1
			}
			defer stop()
			registryAddr = addr
		}
		return m.Run()
	}())
}

func startRegistry(bin string) (func(), string, error) {
	dir, err := os.MkdirTemp("", "oci-transport-step-registry-")
	if err != nil {
		return nil, "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", dir, addr)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); os.RemoveAll(dir) }
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return stop, addr, nil
		}
	}
	stop()
	return nil, "", fmt.Errorf("registry did not start on %s", addr)
}

func needRegistry(t *testing.T) {
	if registryAddr == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("REGISTRY_BIN is not set but CI is: run the tests through `make test`")
		}
		t.Skip("REGISTRY_BIN is not set: skipping the test against a real registry (run `make test`)")
	}
}

func step(t *testing.T, args ...string) (int, string) {
	var stderr bytes.Buffer
	common := []string{"--registry", registryAddr, "--plain-http", "--repository", "tekton-oci-transport/ns1/uid-" + strings.ToLower(t.Name()) + "/workarea"}
	code := run(context.Background(), append([]string{args[0]}, append(common, args[1:]...)...), &stderr)
	return code, stderr.String()
}

// The invocations the webhook generates: subPath views, ordered --from,
// matrix tags, state dir, and the exit codes.
func TestCLIContract(t *testing.T) {
	needRegistry(t)
	// task "fetch": binds the workspace twice, subPaths git and bucket
	src, bucket, st := t.TempDir(), t.TempDir(), t.TempDir()
	code, out := step(t, "pull", "--from", "", "--mount", src+"=git", "--mount", bucket+"=bucket", "--state", st)
	require.Equal(t, 0, code, out)
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("source"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(bucket, "b.txt"), []byte("bucket"), 0o644))
	code, out = step(t, "push", "--tag", "fetch", "--task", "fetch", "--mount", src+"=git", "--mount", bucket+"=bucket", "--state", st)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `msg="push: manifest"`)

	// matrix instances of "build", each mounting the root
	for _, inst := range []string{"build.run-1", "build.run-0"} {
		ws, st := t.TempDir(), t.TempDir()
		code, out = step(t, "pull", "--from", "fetch", "--mount", ws+"=", "--state", st)
		require.Equal(t, 0, code, out)
		require.NoError(t, os.WriteFile(filepath.Join(ws, "git", inst), []byte(inst), 0o644))
		code, out = step(t, "push", "--tag", inst, "--task", "build", "--mount", ws+"=", "--state", st)
		require.Equal(t, 0, code, out)
	}

	// "publish" sees fetch, both matrix instances, and logs the skipped task
	ws, st2 := t.TempDir(), t.TempDir()
	code, out = step(t, "pull", "--from", "fetch,skipped,build", "--mount", ws+"=git", "--state", st2)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "task=skipped")
	for _, f := range []string{"a.txt", "build.run-0", "build.run-1"} {
		_, err := os.Stat(filepath.Join(ws, f))
		require.NoError(t, err, f)
	}
	_, err := os.Stat(filepath.Join(ws, "b.txt"))
	require.True(t, os.IsNotExist(err), "the git view does not get bucket's files")
	// no change: a tiny manifest, exit 0
	code, out = step(t, "push", "--tag", "publish", "--task", "publish", "--mount", ws+"=git", "--state", st2)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "layers=0")
}
