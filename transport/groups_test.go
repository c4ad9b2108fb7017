package transport

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A pull that runs as non-root (Pod Security "restricted": an arbitrary
// UID in group 0, fsGroup on the pod) cannot give files their owners, but
// it gives them their group when the step's user is in it, as a task's own
// step could have: under fsGroup the workspace root is setgid, so a file
// the pull creates takes its directory's group, where on the PVC a file
// written in a directory made with `mkdir -m 0755` (setgid cleared) had its
// writer's.
func TestNonRootPullGivesTheGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the pull as another user: needs root (CI runs as root)")
	}
	const fsGroup, user = 4242, 4243
	e := newEnv(t)
	e.task("build", nil, func(d string) {
		// what the PVC held: plain/ lost setgid, kept/ kept it
		for _, x := range []struct {
			path string
			mode os.FileMode
			gid  int
		}{{"plain", 0o755, fsGroup}, {"kept", 0o755 | os.ModeSetgid, fsGroup}} {
			require.NoError(t, os.Mkdir(filepath.Join(d, x.path), 0o755))
			require.NoError(t, os.Chown(filepath.Join(d, x.path), user, x.gid))
			require.NoError(t, os.Chmod(filepath.Join(d, x.path), x.mode))
		}
		writeFile(t, filepath.Join(d, "plain/file"), "one", 0o644)
		require.NoError(t, os.Chown(filepath.Join(d, "plain/file"), user, 0))
		writeFile(t, filepath.Join(d, "kept/file"), "two", 0o644)
		require.NoError(t, os.Chown(filepath.Join(d, "kept/file"), user, fsGroup))
	})

	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // testing makes them 0700
		require.NoError(t, os.Chmod(d, 0o755))
	}
	dst, state := filepath.Join(base, "ws"), filepath.Join(base, "state")
	require.NoError(t, os.Mkdir(dst, 0o777))
	require.NoError(t, os.Chown(dst, 0, fsGroup)) // an emptyDir under fsGroup
	require.NoError(t, os.Chmod(dst, 0o777|os.ModeSetgid))
	require.NoError(t, os.Mkdir(state, 0o777))
	require.NoError(t, os.Chmod(state, 0o777))

	out := runTestAs(t, base, "TestHelperNonRootPull", "NONROOT_PULL",
		nonRootPull{Registry: e.reg.addr, Repository: e.repo, From: []string{"build"}, Dir: dst, State: state},
		&syscall.Credential{Uid: user, Gid: 0, Groups: []uint32{fsGroup}})
	require.Contains(t, out, "PULLED")

	for p, want := range map[string]struct {
		gid  uint32
		mode os.FileMode
	}{
		"plain":      {fsGroup, os.ModeDir | 0o755},
		"plain/file": {0, 0o644},
		"kept":       {fsGroup, os.ModeDir | os.ModeSetgid | 0o755},
		"kept/file":  {fsGroup, 0o644},
	} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		require.NoError(t, err)
		require.Equal(t, want.gid, statT(fi).Gid, "group of %s", p)
		require.Equal(t, want.mode, fi.Mode(), "mode of %s", p)
		require.EqualValues(t, user, statT(fi).Uid, "%s: created by the pull's user", p)
	}
}

type nonRootPull struct {
	Registry, Repository, Dir, State string
	From                             []string
}

// TestHelperNonRootPull is the child of TestNonRootPullGivesTheGroups.
func TestHelperNonRootPull(t *testing.T) {
	arg := os.Getenv("NONROOT_PULL")
	if arg == "" {
		t.Skip("the child of TestNonRootPullGivesTheGroups")
	}
	var a nonRootPull
	require.NoError(t, json.Unmarshal([]byte(arg), &a))
	_, err := Pull(context.Background(), PullOptions{Options: Options{Registry: a.Registry, Repository: a.Repository, PlainHTTP: true},
		From: a.From, Mounts: []Mount{{Dir: a.Dir}}, StateDir: a.State})
	require.NoError(t, err)
	os.Stdout.WriteString("PULLED\n")
}
