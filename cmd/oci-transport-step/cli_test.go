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
	common := []string{"--registry", registryAddr, "--plain-http", "--repository", "tekton-oci-transport/ns1/uid-" + strings.ToLower(strings.Split(t.Name(), "/")[0]) + "/workarea"}
	code := run(context.Background(), append([]string{args[0]}, append(common, args[1:]...)...), &stderr)
	return code, stderr.String()
}

// The invocations the webhook generates: subPath views, ordered --from,
// matrix tags, state dir, and the exit codes.
func TestCLIContract(t *testing.T) {
	needRegistry(t)
	// task "fetch": binds the workspace twice, subPaths git and bucket
	src, bucket, st := t.TempDir(), t.TempDir(), t.TempDir()
	code, out := step(t, "pull", "--from", "", "--mount", src, "--subpath", "git", "--mount", bucket, "--subpath", "bucket", "--state", st)
	require.Equal(t, 0, code, out)
	require.NoError(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("source"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(bucket, "b.txt"), []byte("bucket"), 0o644))
	code, out = step(t, "push", "--tag", "fetch", "--task", "fetch", "--mount", src, "--subpath", "git", "--mount", bucket, "--subpath", "bucket", "--state", st)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `msg="push: manifest"`)

	// matrix instances of "build", each mounting the root
	for _, inst := range []string{"build.run-1", "build.run-0"} {
		ws, st := t.TempDir(), t.TempDir()
		code, out = step(t, "pull", "--from", "fetch", "--mount", ws, "--state", st)
		require.Equal(t, 0, code, out)
		require.NoError(t, os.WriteFile(filepath.Join(ws, "git", inst), []byte(inst), 0o644))
		code, out = step(t, "push", "--tag", inst, "--task", "build", "--mount", ws, "--state", st)
		require.Equal(t, 0, code, out)
	}

	// "publish" sees fetch, both matrix instances, and logs the skipped task
	ws, st2 := t.TempDir(), t.TempDir()
	code, out = step(t, "pull", "--from", "fetch,skipped,build", "--optional", "skipped", "--mount", ws, "--subpath", "git", "--state", st2)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "task=skipped")
	for _, f := range []string{"a.txt", "build.run-0", "build.run-1"} {
		_, err := os.Stat(filepath.Join(ws, f))
		require.NoError(t, err, f)
	}
	_, err := os.Stat(filepath.Join(ws, "b.txt"))
	require.True(t, os.IsNotExist(err), "the git view does not get bucket's files")
	// no change: a tiny manifest, exit 0
	code, out = step(t, "push", "--tag", "publish", "--task", "publish", "--mount", ws, "--subpath", "git", "--state", st2)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "layers=0")
}

// A subPath may hold any character a path may (`out/GOOS=linux`), and a
// producer whose artifact must exist and does not fails the pull with its
// own exit code; Tekton's status of a producer decides for finally tasks.
func TestCLIViewsAndMissingArtifacts(t *testing.T) {
	needRegistry(t)
	ws, st := t.TempDir(), t.TempDir()
	code, out := step(t, "pull", "--from", "", "--mount", ws, "--subpath", "out/GOOS=linux", "--state", st)
	require.Equal(t, 0, code, out)
	require.NoError(t, os.WriteFile(filepath.Join(ws, "bin"), []byte("elf"), 0o755))
	code, out = step(t, "push", "--tag", "build", "--mount", ws, "--subpath", "out/GOOS=linux", "--state", st)
	require.Equal(t, 0, code, out)

	root := t.TempDir()
	code, out = step(t, "pull", "--from", "build", "--mount", root, "--state", t.TempDir())
	require.Equal(t, 0, code, out)
	b, err := os.ReadFile(filepath.Join(root, "out", "GOOS=linux", "bin"))
	require.NoError(t, err, "the file is under the subPath with its '='")
	require.Equal(t, "elf", string(b))

	for _, c := range []struct {
		name string
		args []string
		code int
	}{
		{"required and missing", []string{"--from", "build,lost"}, 4},
		{"optional and missing", []string{"--from", "build,lost", "--optional", "lost"}, 0},
		{"finally: lost Succeeded", []string{"--from", "build,lost", "--status", "build=Succeeded,lost=Succeeded"}, 4},
		{"finally: lost Failed", []string{"--from", "build,lost", "--status", "build=Succeeded,lost=Failed"}, 0},
		{"finally: status overrides optional", []string{"--from", "lost", "--optional", "lost", "--status", "lost=Succeeded"}, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			code, out := step(t, append(append([]string{"pull"}, c.args...), "--mount", dir, "--state", t.TempDir())...)
			require.Equal(t, c.code, code, out)
			if c.code == 4 {
				require.Contains(t, out, "is missing")
				require.Contains(t, out, `lost`)
				ents, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Empty(t, ents, "nothing applied when an artifact is missing")
			}
		})
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"pull", "--subpath", "git", "--mount", "/tmp/x", "--state", "/tmp/s"},
		{"pull", "--mount", "/tmp/x", "--subpath", "a", "--subpath", "b", "--state", "/tmp/s"},
		{"pull", "--mount", "/tmp/x", "--status", "nostatus", "--state", "/tmp/s", "--from", "a"},
		{"pull", "--mount", "", "--state", "/tmp/s"},
		{"push", "--mount", "/tmp/x", "--subpath", "../up", "--tag", "t", "--state", "/tmp/s"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), append([]string{args[0], "--registry", "127.0.0.1:1", "--repository", "r"}, args[1:]...), &stderr)
		require.Equal(t, 2, code, "%v: %s", args, stderr.String())
	}
}
