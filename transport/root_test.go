package transport

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"
)

// rootTask is e.task on a directory made as the kubelet makes an emptyDir
// (0777): the workspace root a converted task starts from.
func (e *env) rootTask(name string, from []string, body func(dir string)) string {
	e.t.Helper()
	dir, state := e.t.TempDir(), e.t.TempDir()
	require.NoError(e.t, os.Chmod(dir, 0o777))
	e.pull(from, state, Mount{Dir: dir})
	body(dir)
	e.push(name, state, Mount{Dir: dir})
	return dir
}

// requireDir checks a directory's mode (with setuid/setgid/sticky), group
// and, unless zero, mtime.
func requireDir(t *testing.T, dir string, mode os.FileMode, gid uint32, mtime time.Time, what string) {
	t.Helper()
	fi, err := os.Lstat(dir)
	require.NoError(t, err, what)
	require.True(t, fi.IsDir(), what)
	require.Equal(t, mode, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky), "mode of %s", what)
	require.Equal(t, gid, statT(fi).Gid, "group of %s", what)
	if !mtime.IsZero() {
		require.Equal(t, mtime.UnixNano(), fi.ModTime().UnixNano(), "mtime of %s", what)
	}
}

// configOf returns the pushed delta config of tag as raw JSON fields.
func configOf(t *testing.T, e *env, tag string) map[string]json.RawMessage {
	t.Helper()
	m := fetchManifestForTest(t, e, tag)
	o := e.reg.opts(t, e.repo)
	require.NoError(t, o.setDefaults())
	c, err := newClient(&o)
	require.NoError(t, err)
	b, err := c.fetchSmallBlob(context.Background(), m.Config, maxConfigBytes)
	require.NoError(t, err)
	var doc map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &doc))
	return doc
}

// The workspace root's own metadata (the root view's "."), from the
// equivalence case workspace-root-metadata: prepare makes the workspace a
// shared group folder (chgrp 1234, chmod 2775); on a PVC the next tasks see
// that root, so what they create inherits group 1234 (and a directory the
// setgid bit). On the emptyDir the root started as the kubelet's 0777
// root:root in every task.
func TestWorkspaceRootMetadata(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chgrp of the root to a group the test user is not in: needs root (CI runs as root)")
	}
	const group = 1234
	setgid := os.ModeSetgid
	prepared := time.Date(2025, 6, 7, 8, 9, 10, 111222333, time.UTC)
	e := newEnv(t)
	e.rootTask("prepare", nil, func(d string) {
		writeFile(t, filepath.Join(d, ".env"), "A=1\n", 0o644)
		require.NoError(t, os.Mkdir(filepath.Join(d, ".cache"), 0o755))
		require.NoError(t, os.Mkdir(filepath.Join(d, "out"), 0o755))
		require.NoError(t, os.Chown(d, 0, group))
		require.NoError(t, os.Chmod(d, 0o775|setgid))
		require.NoError(t, os.Chtimes(d, prepared, prepared))
	})
	var built time.Time
	e.rootTask("build", []string{"prepare"}, func(d string) {
		requireDir(t, d, 0o775|setgid, group, prepared, "the root prepare left")
		writeFile(t, filepath.Join(d, "b.txt"), "b\n", 0o644)
		require.NoError(t, os.Mkdir(filepath.Join(d, "made-by-b"), 0o755))
		fi, err := os.Lstat(filepath.Join(d, "b.txt"))
		require.NoError(t, err)
		require.EqualValues(t, group, statT(fi).Gid, "b.txt inherits the root's group")
		requireDir(t, filepath.Join(d, "made-by-b"), 0o755|setgid, group, time.Time{}, "made-by-b (inherits group and setgid)")
		fi, err = os.Stat(d)
		require.NoError(t, err)
		built = fi.ModTime()
	})
	require.NotEqual(t, prepared.UnixNano(), built.UnixNano(), "build created entries at the root")

	// seal binds subPath out only: its view's root is the entry "out", it
	// never sees the workspace root and pushes nothing for it
	out, st := t.TempDir(), t.TempDir()
	require.NoError(t, os.Chmod(out, 0o777))
	e.pull([]string{"prepare", "build"}, st, Mount{Dir: out, SubPath: "out"})
	writeFile(t, filepath.Join(out, "app"), "app\n", 0o644)
	require.NoError(t, os.Chown(out, 0, group))
	require.NoError(t, os.Chmod(out, 0o711))
	e.push("seal", st, Mount{Dir: out, SubPath: "out"})
	require.NotContains(t, configOf(t, e, "seal"), "root", "a subPath view does not see the workspace root")

	// a task that does not touch the root (rewrites a file in place, adds
	// below out/) pushes nothing for it, and its descendants still see the
	// root its ancestors left
	e.rootTask("lint", []string{"prepare", "build", "seal"}, func(d string) {
		requireDir(t, d, 0o775|setgid, group, built, "the root build left")
		require.NoError(t, os.WriteFile(filepath.Join(d, ".env"), []byte("A=2\n"), 0o644))
		writeFile(t, filepath.Join(d, "out/lint.txt"), "ok\n", 0o644)
	})
	require.NotContains(t, configOf(t, e, "lint"), "root", "lint did not touch the root")

	e.rootTask("audit", []string{"prepare", "build", "seal", "lint"}, func(d string) {
		requireDir(t, d, 0o775|setgid, group, built, "the root")
		requireDir(t, filepath.Join(d, "out"), 0o711, group, time.Time{}, "out")
		fi, err := os.Lstat(filepath.Join(d, "b.txt"))
		require.NoError(t, err)
		require.EqualValues(t, group, statT(fi).Gid, "b.txt")
		requireDir(t, filepath.Join(d, "made-by-b"), 0o755|setgid, group, time.Time{}, "made-by-b")
		for _, p := range []string{"out/app", "out/lint.txt", ".env", ".cache"} {
			_, err := os.Lstat(filepath.Join(d, p))
			require.NoError(t, err, p)
		}
	})
	require.NotContains(t, configOf(t, e, "audit"), "root", "audit only read")

	// a later change is detected whoever made the one before: chmod alone
	// keeps the mtime and the group build and prepare left
	e.rootTask("lock", []string{"prepare", "build", "seal", "lint"}, func(d string) {
		require.NoError(t, os.Chmod(d, 0o750))
	})
	e.rootTask("check", []string{"prepare", "build", "seal", "lint", "lock"}, func(d string) {
		requireDir(t, d, 0o750, group, built, "the root lock left")
	})

	// a first task that does not touch the root pushes nothing for it: the
	// kubelet's root is not a change
	e.rootTask("idle", nil, func(string) {})
	require.NotContains(t, configOf(t, e, "idle"), "root", "the kubelet's root is not a change")
}

// A restrictive root mode (0711, 0500) is applied after everything below
// it is written.
func TestWorkspaceRootRestrictiveMode(t *testing.T) {
	e := newEnv(t)
	stamp := time.Date(2024, 2, 3, 4, 5, 6, 7, time.UTC)
	sealed := e.rootTask("seal", nil, func(d string) {
		writeFile(t, filepath.Join(d, "deep/er/file"), "x", 0o644)
		require.NoError(t, os.Chmod(d, 0o500))
		require.NoError(t, os.Chtimes(d, stamp, stamp))
	})
	require.NoError(t, os.Chmod(sealed, 0o700)) // for t.TempDir's cleanup as non-root
	d := e.rootTask("read", []string{"seal"}, func(d string) {
		fi, err := os.Stat(d)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o500), fi.Mode().Perm())
		require.Equal(t, stamp.UnixNano(), fi.ModTime().UnixNano())
	})
	b, err := os.ReadFile(filepath.Join(d, "deep/er/file"))
	require.NoError(t, err)
	require.Equal(t, "x", string(b))
	require.NoError(t, os.Chmod(d, 0o700)) // for t.TempDir's cleanup as non-root
}

// A pull that runs as non-root gives the root what its user may: nothing
// on the kubelet's root:root directory (the pull still succeeds), the
// mode, times and a group it is in on a directory it owns.
func TestNonRootPullAndTheWorkspaceRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the pull as another user: needs root (CI runs as root)")
	}
	const group, user = 1234, 4243
	stamp := time.Date(2025, 6, 7, 8, 9, 10, 111222333, time.UTC)
	e := newEnv(t)
	e.rootTask("prepare", nil, func(d string) {
		writeFile(t, filepath.Join(d, "f"), "f", 0o644)
		require.NoError(t, os.Chown(d, 0, group))
		require.NoError(t, os.Chmod(d, 0o775|os.ModeSetgid))
		require.NoError(t, os.Chtimes(d, stamp, stamp))
	})

	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // testing makes them 0700
		require.NoError(t, os.Chmod(d, 0o755))
	}
	self, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	bin := filepath.Join(base, "transport.test")
	require.NoError(t, os.WriteFile(bin, self, 0o755))
	pullAs := func(dst string) {
		t.Helper()
		state := dst + ".state"
		require.NoError(t, os.Mkdir(state, 0o777))
		require.NoError(t, os.Chmod(state, 0o777))
		args, _ := json.Marshal(nonRootPull{Registry: e.reg.addr, Repository: e.repo, From: []string{"prepare"}, Dir: dst, State: state})
		child := exec.Command(bin, "-test.run=^TestHelperNonRootPull$", "-test.count=1")
		child.Dir = base
		child.Env = []string{"NONROOT_PULL=" + string(args), "PATH=" + os.Getenv("PATH")}
		child.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: user, Gid: 0, Groups: []uint32{group}}}
		out, err := child.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "PULLED")
	}

	kubelets := filepath.Join(base, "kubelets") // root:root 0777, as the kubelet makes it
	require.NoError(t, os.Mkdir(kubelets, 0o777))
	require.NoError(t, os.Chmod(kubelets, 0o777))
	pullAs(kubelets)
	requireDir(t, kubelets, 0o777, 0, time.Time{}, "the kubelet's root: the step may not change it")

	owned := filepath.Join(base, "owned")
	require.NoError(t, os.Mkdir(owned, 0o777))
	require.NoError(t, os.Chmod(owned, 0o777))
	require.NoError(t, os.Chown(owned, user, 0))
	pullAs(owned)
	requireDir(t, owned, 0o775|os.ModeSetgid, group, stamp, "a root the pull's user owns, in a group it is in")
}

// The workspace root can never be deleted, nor replaced by a file or a
// symlink: such entries are refused as corrupt, and nothing is written
// outside the mount (nor the root's mode changed).
func TestHostileWorkspaceRoot(t *testing.T) {
	for name, entries := range map[string][]tarEntry{
		"root as a file":                 {{name: "ws-000/.", body: "x"}},
		"root as a symlink":              {{name: "ws-000/.", link: "/etc", typ: tar.TypeSymlink}},
		"root as a symlink up":           {{name: "ws-000/.", link: "..", typ: tar.TypeSymlink}},
		"root dir entry with a dot":      {{name: "ws-000/./", typ: tar.TypeDir, mode: 0o700}},
		"layer folder as a symlink":      {{name: "ws-000/", link: "..", typ: tar.TypeSymlink}},
		"layer folder as a file":         {{name: "ws-000", body: "x"}},
		"file below a dot":               {{name: "ws-000/./evil", body: "x"}},
		"layer folder as a hard link":    {{name: "ws-000/f", body: "f"}, {name: "ws-000/", link: "ws-000/f", typ: tar.TypeLink}},
		"layer folder as a fifo":         {{name: "ws-000", typ: tar.TypeFifo}},
		"root as a file after its files": {{name: "ws-000/a", body: "a"}, {name: "ws-000/.", body: "x"}},
	} {
		t.Run(name, func(t *testing.T) {
			parent, err := extractInto(t, buildTar(t, entries...), Limits{}, "")
			require.Error(t, err)
			require.Equal(t, ExitRefused, ExitCode(err), err.Error())
			require.Empty(t, outside(t, parent), "nothing written outside the mount")
			fi, err := os.Lstat(filepath.Join(parent, "mount"))
			require.NoError(t, err)
			require.True(t, fi.IsDir())
		})
	}

	e := newEnv(t)
	layer := buildTar(t, tarEntry{name: "ws-000/a", body: "a"})
	for name, cfg := range map[string]string{
		"deletion of the root":     `{"version":1,"deletions":[""]}`,
		"deletion of .":            `{"version":1,"deletions":["."]}`,
		"deletion of ./":           `{"version":1,"deletions":["./"]}`,
		"raw deletion of the root": `{"version":2,"deletions":[],"rawDeletions":[""]}`,
		"raw deletion of .":        `{"version":2,"deletions":[],"rawDeletions":["Lg=="]}`,
		"root with a file's type":  `{"version":1,"deletions":[],"root":{"mode":33188}}`,
		"root with a symlink type": `{"version":1,"deletions":[],"root":{"mode":41471}}`,
		"root uid of -1":           `{"version":1,"deletions":[],"root":{"uid":4294967295}}`,
		"root gid of -1":           `{"version":1,"deletions":[],"root":{"gid":4294967295}}`,
		"root mode not a number":   `{"version":1,"deletions":[],"root":{"mode":"0755"}}`,
		"root not an object":       `{"version":1,"deletions":[],"root":"./"}`,
	} {
		t.Run(name, func(t *testing.T) {
			tag := "evil-" + digest.FromString(name).Encoded()[:12]
			pushCrafted(t, e, tag, []byte(cfg), layer, MediaTypeTar)
			parent := t.TempDir()
			mnt := filepath.Join(parent, "mount")
			require.NoError(t, os.Mkdir(mnt, 0o777))
			require.NoError(t, os.Chmod(mnt, 0o777))
			writeFile(t, filepath.Join(mnt, "keep"), "the sidecar's", 0o644)
			_, err := Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{tag},
				Mounts: []Mount{{Dir: mnt}}, StateDir: t.TempDir()})
			require.Error(t, err)
			require.Equal(t, ExitRefused, ExitCode(err), err.Error())
			t.Log(err)
			require.Empty(t, outside(t, parent))
			requireDir(t, mnt, 0o777, statT(mustStat(t, parent)).Gid, time.Time{}, "the mount root, untouched")
			require.Equal(t, []string{"keep"}, names(t, mnt), "nothing applied, nothing deleted")
		})
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	require.NoError(t, err)
	return fi
}

// The root travels in the config as the fields a task changed; the config
// stays version 1 (2 with raw names), so a puller that does not know the
// field reads the delta as before and leaves its root alone.
func TestDeltaConfigRoot(t *testing.T) {
	mode, gid, mtime := uint32(0o2775), uint32(1234), int64(-1) // before the epoch: any int64
	in := deltaConfig{Deletions: []string{"a"}, Root: &rootMeta{Mode: &mode, GID: &gid, Mtime: &mtime}}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.JSONEq(t, `{"version":1,"deletions":["a"],"root":{"mode":1533,"gid":1234,"mtime":-1}}`, string(b))
	var got deltaConfig
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, in.Root, got.Root)
	require.Nil(t, got.Root.UID, "uid 0 and no uid are different things")

	// an older puller's config type: the field is ignored
	var old struct {
		Version   int      `json:"version"`
		Deletions []string `json:"deletions"`
	}
	require.NoError(t, json.Unmarshal(b, &old))
	require.Equal(t, 1, old.Version)

	// no change, no field
	b, err = json.Marshal(deltaConfig{Root: &rootMeta{}})
	require.NoError(t, err)
	require.NotContains(t, string(b), "root")
	// the later delta wins field by field
	m2 := uint32(0o750)
	later := rootMeta{Mode: &m2}
	folded := (rootMeta{}).over(in.Root).over(&later)
	require.Equal(t, m2, *folded.Mode)
	require.Equal(t, gid, *folded.GID)
	require.Equal(t, mtime, *folded.Mtime)
}

// The workspace's first task gets no pull step, so nothing recorded its
// root: its push compares the root with what the kubelet makes of an
// emptyDir (0777 root:root, 2777 root:<fsGroup>). Seen on the test bed:
// with only the recorded comparison, prepare's chgrp/chmod 2775 (no pull
// before it) never reached build.
func TestFirstTaskRootWithoutAPull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chgrp to another group needs root")
	}
	for _, tc := range []struct {
		name    string
		mode    os.FileMode // the kubelet's root
		gid     int
		change  func(dir string)
		pushed  bool
		wantDir os.FileMode
		wantGID uint32
	}{
		{"kubelets-root", 0o777, 0, func(string) {}, false, 0o777, 0},
		{"fsgroup-root", 0o777 | os.ModeSetgid, 2000, func(string) {}, false, 0o777, 0},
		{"shared-group-folder", 0o777, 0, func(d string) {
			require.NoError(t, os.Chown(d, 0, 1234))
			require.NoError(t, os.Chmod(d, 0o775|os.ModeSetgid))
		}, true, 0o775 | os.ModeSetgid, 1234},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			dir, state := t.TempDir(), t.TempDir()
			require.NoError(t, os.Chown(dir, 0, tc.gid))
			require.NoError(t, os.Chmod(dir, tc.mode))
			writeFile(t, filepath.Join(dir, "made"), "x", 0o644)
			tc.change(dir)
			e.push("first", state, Mount{Dir: dir}) // no pull before it
			_, pushed := configOf(t, e, "first")["root"]
			require.Equal(t, tc.pushed, pushed, "a root in the delta config")
			next := e.rootTask("next", []string{"first"}, func(string) {})
			requireDir(t, next, tc.wantDir, tc.wantGID, time.Time{}, "the next task's root")
		})
	}
}
