package transport

import (
	"context"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
)

// Each test here is a shape real workspaces have that a PVC keeps and the
// transport must keep too (issue: fidelity of the transport).

// What is in the directory before the pull (a sidecar's files, the
// directory the kubelet made for a subPath) is the task's own change, as on
// a PVC, and is pushed; only what the pull applied is the baseline.
func TestPreExistingContentIsPushed(t *testing.T) {
	e := newEnv(t)
	e.task("clone", nil, func(d string) { writeFile(t, filepath.Join(d, "git/src.go"), "code", 0o644) })

	// task "test": a sidecar wrote cache/warm before the steps; the kubelet
	// made out/ for a subPath view
	root, out, st := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(root, "cache/warm"), "from the sidecar", 0o644)
	e.pull([]string{"clone"}, st, Mount{Dir: root}, Mount{Dir: out, SubPath: "out"})
	r := e.push("test", st, Mount{Dir: root}, Mount{Dir: out, SubPath: "out"})
	require.Equal(t, 1, r.Files, "the sidecar's file")

	got := e.task("report", []string{"clone", "test"}, func(string) {})
	snap := snapshot(t, got)
	require.Contains(t, snap, "cache/warm")
	require.Contains(t, snap, "out", "the subPath directory the kubelet created")
	require.Contains(t, snap, "git/src.go")
}

// A task that binds one view readOnly and another writable pushes only the
// writable one; the readOnly view's files are not deletions.
func TestReadOnlyViewIsNotDeleted(t *testing.T) {
	e := newEnv(t)
	e.task("fill", nil, func(d string) {
		writeFile(t, filepath.Join(d, "git/a"), "a", 0o644)
		writeFile(t, filepath.Join(d, "out/old"), "old", 0o644)
	})
	git, out, st := t.TempDir(), t.TempDir(), t.TempDir()
	e.pull([]string{"fill"}, st, Mount{Dir: git, SubPath: "git"}, Mount{Dir: out, SubPath: "out"})
	writeFile(t, filepath.Join(out, "new"), "new", 0o644)
	r := e.push("build", st, Mount{Dir: out, SubPath: "out"}) // the push gets the writable view only
	require.Zero(t, r.Deletions)
	snap := snapshot(t, e.task("check", []string{"fill", "build"}, func(string) {}))
	require.Contains(t, snap, "git/a")
	require.Contains(t, snap, "out/old")
	require.Contains(t, snap, "out/new")
}

// Directories with mtime 0 (SOURCE_DATE_EPOCH=0, touch -d @0) keep their
// modes and times; only the directories the push made up above its views
// are created without metadata.
func TestMtimeZeroDirectories(t *testing.T) {
	e := newEnv(t)
	modes := map[string]os.FileMode{"d700": 0o700, "d1777": 0o1777 | os.ModeSticky, "d2750": 0o750 | os.ModeSetgid, "d555": 0o555}
	src := e.task("build", nil, func(d string) {
		for name, mode := range modes {
			p := filepath.Join(d, "out", name)
			writeFile(t, filepath.Join(p, "f"), "f", 0o644)
			require.NoError(t, os.Chmod(p, mode))
			require.NoError(t, os.Chtimes(p, time.Unix(0, 0), time.Unix(0, 0)))
		}
	})
	dst := t.TempDir()
	e.pull([]string{"build"}, t.TempDir(), Mount{Dir: dst})
	for name, mode := range modes {
		want, err := os.Stat(filepath.Join(src, "out", name))
		require.NoError(t, err)
		got, err := os.Stat(filepath.Join(dst, "out", name))
		require.NoError(t, err)
		require.Equal(t, want.Mode(), got.Mode(), name)
		require.Equal(t, mode&os.ModePerm, got.Mode()&os.ModePerm, name)
		require.Zero(t, got.ModTime().UnixNano(), name)
	}
	// a view below the root: "a" above it is made up, "a/b" is real
	v, st := t.TempDir(), t.TempDir()
	e.pull(nil, st, Mount{Dir: v, SubPath: "a/b"})
	writeFile(t, filepath.Join(v, "x"), "x", 0o644)
	require.NoError(t, os.Chmod(v, 0o700))
	e.push("view", st, Mount{Dir: v, SubPath: "a/b"})
	root := t.TempDir()
	e.pull([]string{"view"}, t.TempDir(), Mount{Dir: root})
	fa, err := os.Stat(filepath.Join(root, "a"))
	require.NoError(t, err)
	require.NotZero(t, fa.ModTime().UnixNano(), "a made-up ancestor gets no metadata")
	fb, err := os.Stat(filepath.Join(root, "a/b"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fb.Mode().Perm())
}

// Hard links stay links: a later task writing through one name is seen
// through every name, as on a PVC.
func TestHardLinks(t *testing.T) {
	e := newEnv(t)
	e.task("a", nil, func(d string) {
		writeFile(t, filepath.Join(d, "data/f"), "one\n", 0o644)
		require.NoError(t, os.MkdirAll(filepath.Join(d, "other"), 0o755))
		require.NoError(t, os.Link(filepath.Join(d, "data/f"), filepath.Join(d, "data/g")))
		require.NoError(t, os.Link(filepath.Join(d, "data/f"), filepath.Join(d, "other/h")))
	})
	e.task("b", []string{"a"}, func(d string) {
		requireSameFile(t, filepath.Join(d, "data/f"), filepath.Join(d, "data/g"), filepath.Join(d, "other/h"))
		f, err := os.OpenFile(filepath.Join(d, "data/g"), os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString("two\n")
		require.NoError(t, err)
		require.NoError(t, f.Close())
	})
	d := e.task("c", []string{"a", "b"}, func(string) {})
	requireSameFile(t, filepath.Join(d, "data/f"), filepath.Join(d, "data/g"), filepath.Join(d, "other/h"))
	b, err := os.ReadFile(filepath.Join(d, "other/h"))
	require.NoError(t, err)
	require.Equal(t, "one\ntwo\n", string(b))

	// a view that shows a name but not the first one still gets the data
	v := t.TempDir()
	e.pull([]string{"a", "b"}, t.TempDir(), Mount{Dir: v, SubPath: "other"})
	b, err = os.ReadFile(filepath.Join(v, "h"))
	require.NoError(t, err)
	require.Equal(t, "one\ntwo\n", string(b))
	// two views of one emptyDir: names in both are linked across them
	base := t.TempDir()
	data, other := filepath.Join(base, "data"), filepath.Join(base, "other")
	e.pull([]string{"a", "b"}, t.TempDir(), Mount{Dir: other, SubPath: "other"}, Mount{Dir: data, SubPath: "data"})
	requireSameFile(t, filepath.Join(data, "f"), filepath.Join(other, "h"))
}

func requireSameFile(t *testing.T, paths ...string) {
	t.Helper()
	first, err := os.Stat(paths[0])
	require.NoError(t, err)
	for _, p := range paths[1:] {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.True(t, os.SameFile(first, fi), "%s and %s are one file", paths[0], p)
	}
}

// Absolute and dangling symlinks (a virtualenv's bin/python, Bazel's
// bazel-out) and FIFOs are stored as they are; sockets are skipped with a
// log line (a socket is dead once its process exits).
func TestVirtualenvShapes(t *testing.T) {
	e := newEnv(t)
	e.task("venv", nil, func(d string) {
		require.NoError(t, os.MkdirAll(filepath.Join(d, "venv/bin"), 0o755))
		require.NoError(t, os.Symlink("/usr/bin/python3", filepath.Join(d, "venv/bin/python")))
		require.NoError(t, os.Symlink("../../bazel-cache/out", filepath.Join(d, "bazel-out")))
		require.NoError(t, os.Symlink("../../LICENSE", filepath.Join(d, "venv/bin/LICENSE")))
		require.NoError(t, unix.Mkfifo(filepath.Join(d, "venv/pipe"), 0o640))
		l, err := net.Listen("unix", filepath.Join(d, "venv/agent.sock"))
		require.NoError(t, err)
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close() // the socket file stays, dead
		_, err = os.Lstat(filepath.Join(d, "venv/agent.sock"))
		require.NoError(t, err)
	})
	d := e.task("use", []string{"venv"}, func(string) {})
	for p, want := range map[string]string{"venv/bin/python": "/usr/bin/python3", "bazel-out": "../../bazel-cache/out", "venv/bin/LICENSE": "../../LICENSE"} {
		got, err := os.Readlink(filepath.Join(d, p))
		require.NoError(t, err, p)
		require.Equal(t, want, got, p)
	}
	fi, err := os.Lstat(filepath.Join(d, "venv/pipe"))
	require.NoError(t, err)
	require.Equal(t, os.ModeNamedPipe|0o640, fi.Mode())
	_, err = os.Lstat(filepath.Join(d, "venv/agent.sock"))
	require.True(t, os.IsNotExist(err), "sockets are not stored")
}

// A subPath that is a symlink to a directory inside the workspace shows
// that directory, as the kubelet resolves it on a PVC; what the task writes
// there lands in the directory.
func TestSubPathThroughSymlink(t *testing.T) {
	e := newEnv(t)
	e.task("release", nil, func(d string) {
		writeFile(t, filepath.Join(d, "releases/v1/notes"), "v1", 0o644)
		require.NoError(t, os.Symlink("releases/v1", filepath.Join(d, "current")))
	})
	cur, st := t.TempDir(), t.TempDir()
	e.pull([]string{"release"}, st, Mount{Dir: cur, SubPath: "current"})
	b, err := os.ReadFile(filepath.Join(cur, "notes"))
	require.NoError(t, err)
	require.Equal(t, "v1", string(b))
	writeFile(t, filepath.Join(cur, "signed"), "sig", 0o644)
	e.push("sign", st, Mount{Dir: cur, SubPath: "current"})

	d := e.task("publish", []string{"release", "sign"}, func(string) {})
	b, err = os.ReadFile(filepath.Join(d, "releases/v1/signed"))
	require.NoError(t, err)
	require.Equal(t, "sig", string(b))
	l, err := os.Readlink(filepath.Join(d, "current"))
	require.NoError(t, err)
	require.Equal(t, "releases/v1", l)

	// a subPath through an absolute symlink is refused, as the kubelet does
	e.task("abs", nil, func(d string) { require.NoError(t, os.Symlink("/etc", filepath.Join(d, "etc"))) })
	_, err = Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{"abs"},
		Mounts: []Mount{{Dir: t.TempDir(), SubPath: "etc"}}, StateDir: t.TempDir()})
	require.ErrorContains(t, err, "outside the workspace")

	// two subPaths of one task that meet through a symlink (current ->
	// releases/v1 and releases) are one directory on a PVC and two in the
	// pod: refused before the steps run, not a silently different tree
	_, err = Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{"release"},
		Mounts: []Mount{{Dir: t.TempDir(), SubPath: "releases"}, {Dir: t.TempDir(), SubPath: "current"}}, StateDir: t.TempDir()})
	require.ErrorContains(t, err, "one place of the workspace through its symlinks")
	// apart after resolution too: fine
	e.pull([]string{"release"}, t.TempDir(), Mount{Dir: t.TempDir(), SubPath: "releases/v2"}, Mount{Dir: t.TempDir(), SubPath: "current"})
}

// Paths longer than PATH_MAX (deep trees built with relative renames) push
// and pull.
func TestPathsLongerThanPathMax(t *testing.T) {
	e := newEnv(t)
	comp := strings.Repeat("d", 200)
	depth := 30 // 30 * 201 bytes: over 4096
	src := e.task("deep", nil, func(d string) {
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		require.NoError(t, err)
		for range depth {
			require.NoError(t, unix.Mkdirat(fd, comp, 0o755))
			nfd, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			require.NoError(t, err)
			unix.Close(fd)
			fd = nfd
		}
		ffd, err := unix.Openat(fd, "bottom.txt", unix.O_CREAT|unix.O_WRONLY, 0o644)
		require.NoError(t, err)
		_, err = unix.Write(ffd, []byte("deep"))
		require.NoError(t, err)
		unix.Close(ffd)
		unix.Close(fd)
	})
	dst := t.TempDir()
	e.pull([]string{"deep"}, t.TempDir(), Mount{Dir: dst})
	fd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	require.NoError(t, err)
	for range depth {
		nfd, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		require.NoError(t, err)
		unix.Close(fd)
		fd = nfd
	}
	buf := make([]byte, 16)
	ffd, err := unix.Openat(fd, "bottom.txt", unix.O_RDONLY, 0)
	require.NoError(t, err)
	n, _ := unix.Read(ffd, buf)
	require.Equal(t, "deep", string(buf[:n]))
	unix.Close(ffd)
	unix.Close(fd)
	// t.TempDir's cleanup cannot remove such a tree by path
	t.Cleanup(func() { removeDeep(dst); removeDeep(src) })
}

// removeDeep removes a tree of any depth, one directory descriptor at a time.
func removeDeep(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return
	}
	var rm func(fd int)
	rm = func(fd int) {
		f := os.NewFile(uintptr(fd), "")
		names, _ := f.Readdirnames(-1)
		for _, n := range names {
			if unix.Unlinkat(fd, n, 0) == nil {
				continue
			}
			if cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0); err == nil {
				rm(cfd)
				_ = unix.Unlinkat(fd, n, unix.AT_REMOVEDIR)
			}
		}
		f.Close()
	}
	rm(fd)
}

// zot answers 404 for `tags/list?last=<a tag deleted meanwhile>` (CNCF
// Distribution answers 200): the listing starts over instead of taking the
// cut list for "the other producers pushed nothing".
func TestTagListPageGoneOnZot(t *testing.T) {
	z, err := testenv.StartZot(testenv.ZotBin(t))
	require.NoError(t, err)
	defer z.Close()
	reg := &registryProc{Registry: z, addr: z.Addr(), dir: z.Dir()}
	e := &env{t: t, reg: reg, repo: "tekton-oci-transport/ns1/pagegone/ws"}
	defer func(n int) { tagListPageSize = n }(tagListPageSize)
	tagListPageSize = 2
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		e.task(tag, nil, func(d string) { writeFile(t, filepath.Join(d, tag), tag, 0o644) })
	}
	// while the first listing is between pages 1 and 2, "b" (the `last`
	// of page 1) is deleted: zot 404s the next page
	deleted := false
	testHookTagPage = func(page int) {
		if page != 1 || deleted {
			return
		}
		deleted = true
		repo, err := remote.NewRepository(z.Addr() + "/" + e.repo)
		require.NoError(t, err)
		repo.PlainHTTP = true
		desc, err := repo.Resolve(context.Background(), "b")
		require.NoError(t, err)
		require.NoError(t, repo.Delete(context.Background(), desc))
	}
	defer func() { testHookTagPage = nil }()
	dir := t.TempDir()
	r, err := Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{"a", "c", "d", "e"},
		Mounts: []Mount{{Dir: dir}}, StateDir: t.TempDir()})
	require.NoError(t, err)
	require.True(t, deleted)
	require.Equal(t, []string{"a", "c", "d", "e"}, r.Applied, "the listing started over after the 404")
	// and a producer that must exist and was deleted is an error, not "skipped"
	_, err = Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{"a", "b"},
		Mounts: []Mount{{Dir: t.TempDir()}}, StateDir: t.TempDir()})
	require.Equal(t, ExitMissing, ExitCode(err), err)
}

// The pull's baseline is readable by a push that runs as another user (a
// root first step, a non-root last step).
func TestBaselineReadableByOtherUsers(t *testing.T) {
	e := newEnv(t)
	e.task("a", nil, func(d string) { writeFile(t, filepath.Join(d, "f"), "f", 0o644) })
	st := t.TempDir()
	e.pull([]string{"a"}, st, Mount{Dir: t.TempDir()})
	fi, err := os.Stat(filepath.Join(st, baselineFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
}

// The directory a subPath view is mounted on is the kubelet's (0777 on an
// emptyDir); on a PVC it is the directory the ancestors made, with their
// mode: the pull gives it theirs, so a later root view sees it unchanged.
func TestMountRootTakesTheAncestorsMode(t *testing.T) {
	e := newEnv(t)
	e.task("fetch", nil, func(d string) {
		writeFile(t, filepath.Join(d, "out/old"), "old", 0o644)
		require.NoError(t, os.Chmod(filepath.Join(d, "out"), 0o750))
	})
	out, st := t.TempDir(), t.TempDir()
	require.NoError(t, os.Chmod(out, 0o777)) // as the kubelet makes it
	e.pull([]string{"fetch"}, st, Mount{Dir: out, SubPath: "out"})
	fi, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o750), fi.Mode().Perm())
	writeFile(t, filepath.Join(out, "new"), "new", 0o644)
	e.push("build", st, Mount{Dir: out, SubPath: "out"})
	d := e.task("verify", []string{"fetch", "build"}, func(string) {})
	fi, err = os.Stat(filepath.Join(d, "out"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o750), fi.Mode().Perm(), "the ancestor's mode, not the kubelet's")
}

// Layers bigger than the in-memory spool spill into the state directory (an
// emptyDir the step owns), so the step image needs no /tmp.
func TestSpoolSpillsIntoTheStateDir(t *testing.T) {
	e := newEnv(t)
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "no-such-dir"))
	src, st := t.TempDir(), t.TempDir()
	randomFile(t, filepath.Join(src, "blob"), 3<<20, 7)
	_, err := Push(context.Background(), PushOptions{Options: e.reg.opts(t, e.repo), Tag: "big", Task: "big",
		Mounts: []Mount{{Dir: src}}, StateDir: filepath.Join(st, "ws"), SpoolMemory: 64 << 10})
	require.NoError(t, err)
	dst := t.TempDir()
	e.pull([]string{"big"}, t.TempDir(), Mount{Dir: dst})
	require.Equal(t, snapshot(t, src)["blob"], snapshot(t, dst)["blob"])
	ents, err := os.ReadDir(filepath.Join(st, "ws"))
	require.NoError(t, err)
	require.Empty(t, ents, "spill files are unlinked")
}

// Linux names are bytes: a Latin-1 name, raw 0xff 0xfe, a directory with a
// non-UTF-8 name renamed to another one, and a symlink whose name and target
// are not UTF-8. Their deletions and the symlinks a delta lists must reach
// the next task byte for byte (JSON, which the delta config is, turns
// invalid UTF-8 into U+FFFD: the deletion missed its file and the old name
// stayed on every later task, seen on the test bed in
// non-utf8-and-odd-names).
func TestNonUTF8Names(t *testing.T) {
	latin1, raw := "caf\xe9.txt", "\xff\xferaw"
	oldDir, newDir := "\xe9t\xe9", "\xf8t\xf8"
	e := newEnv(t)
	e.task("seed", nil, func(d string) {
		writeFile(t, filepath.Join(d, latin1), "latin1\n", 0o644)
		writeFile(t, filepath.Join(d, raw), "raw\n", 0o644)
		writeFile(t, filepath.Join(d, oldDir, "\xe9"), "inside\n", 0o644)
		require.NoError(t, os.Symlink("target-\xe9", filepath.Join(d, "link-\xe9")))
	})
	edited := e.task("edit", []string{"seed"}, func(d string) {
		require.NoError(t, os.Remove(filepath.Join(d, latin1)))
		writeFile(t, filepath.Join(d, raw), "raw v2\n", 0o644)
		require.NoError(t, os.Rename(filepath.Join(d, oldDir), filepath.Join(d, newDir)))
		require.NoError(t, os.Remove(filepath.Join(d, "link-\xe9")))
		require.NoError(t, os.Symlink("other-\xff", filepath.Join(d, "link-\xff")))
	})
	snap := snapshot(t, e.task("check", []string{"seed", "edit"}, func(string) {}))
	require.ElementsMatch(t, []string{raw, newDir, newDir + "/\xe9", "link-\xff"}, slices.Collect(maps.Keys(snap)))
	require.Equal(t, "link other-\xff", snap["link-\xff"])
	require.Equal(t, snapshot(t, edited), snap, "what edit left, byte for byte")
}
