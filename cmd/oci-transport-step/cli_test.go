package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
)

var registryAddr string

// TestMain starts a real registry (REGISTRY_BIN) for the CLI contract tests.
func TestMain(m *testing.M) {
	os.Exit(func() int {
		if bin := os.Getenv("REGISTRY_BIN"); bin != "" {
			r, err := testenv.StartRegistry(bin, testenv.RegistryOptions{})
			if err != nil {
				fmt.Fprintln(os.Stderr, "start registry:", err)
				return 1
			}
			defer r.Close()
			registryAddr = r.Addr()
		}
		return m.Run()
	}())
}

func needRegistry(t *testing.T) {
	t.Helper()
	testenv.Require(t, "REGISTRY_BIN", "the CLI contract tests run against a real registry")
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
