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

// A non-root task may leave entries its own user cannot read (a 000 file, a
// 0200 log, a 000 directory, a 0300 dropbox). The push, as that user, lends
// itself the owner's permission to read them and gives the modes back; the
// delta holds them as the task left them (outside case
// non-root-unreadable-own-files: the push failed "open .../dropbox:
// permission denied" where the PVC run had nothing to read).
func TestNonRootPushReadsItsOwnUnreadableEntries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the push as another user: needs root (CI runs as root)")
	}
	const user = 4244
	e := newEnv(t)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // testing makes them 0700
		require.NoError(t, os.Chmod(d, 0o755))
	}
	ws, state := filepath.Join(base, "ws"), filepath.Join(base, "state")
	require.NoError(t, os.Mkdir(ws, 0o777))
	require.NoError(t, os.Mkdir(state, 0o777))
	require.NoError(t, os.Chmod(state, 0o777))
	entries := []struct {
		path, data string
		mode       os.FileMode
	}{
		{"locked/inside.txt", "in\n", 0o644},
		{"dropbox/letter", "letter\n", 0o644},
		{"unreadable.txt", "hidden\n", 0},
		{"writeonly.log", "wo\n", 0o200},
		{"setuid-unreadable", "x\n", 0o4200},
	}
	for _, x := range entries {
		writeFile(t, filepath.Join(ws, x.path), x.data, 0o644)
	}
	require.NoError(t, filepath.Walk(ws, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, user, user)
	}))
	for _, x := range entries {
		require.NoError(t, os.Chmod(filepath.Join(ws, x.path), x.mode))
	}
	require.NoError(t, os.Chmod(filepath.Join(ws, "locked"), 0))
	require.NoError(t, os.Chmod(filepath.Join(ws, "dropbox"), 0o300))
	before := snapshot(t, ws)

	as := &syscall.Credential{Uid: user, Gid: user}
	out := runTestAs(t, base, "TestHelperNonRootPush", "NONROOT_PUSH",
		nonRootPush{Registry: e.reg.addr, Repository: e.repo, Dir: ws, State: state}, as)
	require.Contains(t, out, "PUSHED")

	require.Equal(t, before, snapshot(t, ws), "the push gave every mode back")
	got := e.task("check", []string{"fixtures"}, func(string) {})
	require.Equal(t, before, snapshot(t, got), "the delta holds the entries as the task left them")

	// the next task, as the same user: its pull makes the 000 directory
	// and must still stat what is in it for its baseline
	pulled, state2 := filepath.Join(base, "pulled"), filepath.Join(base, "state2")
	require.NoError(t, os.Mkdir(pulled, 0o777))
	require.NoError(t, os.Chmod(pulled, 0o777))
	require.NoError(t, os.Mkdir(state2, 0o777))
	require.NoError(t, os.Chmod(state2, 0o777))
	out = runTestAs(t, base, "TestHelperNonRootPull", "NONROOT_PULL",
		nonRootPull{Registry: e.reg.addr, Repository: e.repo, From: []string{"fixtures"}, Dir: pulled, State: state2}, as)
	require.Contains(t, out, "PULLED")
	require.Equal(t, before, snapshot(t, pulled), "a non-root pull gives the modes back after its baseline")
}

type nonRootPush struct {
	Registry, Repository, Dir, State string
}

// TestHelperNonRootPush is the child of
// TestNonRootPushReadsItsOwnUnreadableEntries.
func TestHelperNonRootPush(t *testing.T) {
	arg := os.Getenv("NONROOT_PUSH")
	if arg == "" {
		t.Skip("the child of TestNonRootPushReadsItsOwnUnreadableEntries")
	}
	var a nonRootPush
	require.NoError(t, json.Unmarshal([]byte(arg), &a))
	_, err := Push(context.Background(), PushOptions{Options: Options{Registry: a.Registry, Repository: a.Repository, PlainHTTP: true},
		Tag: "fixtures", Task: "fixtures", Mounts: []Mount{{Dir: a.Dir}}, StateDir: a.State})
	require.NoError(t, err)
	os.Stdout.WriteString("PUSHED\n")
}
