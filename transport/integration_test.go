package transport

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type env struct {
	t    *testing.T
	reg  *registryProc
	repo string
}

func newEnv(t *testing.T) *env {
	reg := needRegistry(t)
	return &env{t: t, reg: reg, repo: "tekton-oci-transport/ns1/" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "/ws"}
}

func (e *env) push(tag string, state string, mounts ...Mount) *PushResult {
	e.t.Helper()
	r, err := Push(context.Background(), PushOptions{Options: e.reg.opts(e.t, e.repo), Tag: tag, Task: strings.Split(tag, ".")[0],
		Mounts: mounts, StateDir: state})
	require.NoError(e.t, err)
	return r
}

func (e *env) pull(from []string, state string, mounts ...Mount) *PullResult {
	e.t.Helper()
	r, err := Pull(context.Background(), PullOptions{Options: e.reg.opts(e.t, e.repo), From: from, Mounts: mounts, StateDir: state})
	require.NoError(e.t, err)
	return r
}

// task simulates one task: pull its ancestors into a fresh emptyDir, run
// body, push its delta.
func (e *env) task(name string, from []string, body func(dir string)) string {
	e.t.Helper()
	dir, state := e.t.TempDir(), e.t.TempDir()
	e.pull(from, state, Mount{Dir: dir})
	body(dir)
	e.push(name, state, Mount{Dir: dir})
	return dir
}

func TestRoundTrip(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "README"), "hello\n", 0o644)
	writeFile(t, filepath.Join(src, "bin/run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	writeFile(t, filepath.Join(src, "secret/key"), "k", 0o600)
	require.NoError(t, os.Chmod(filepath.Join(src, "secret"), 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "empty/nested"), 0o755))
	require.NoError(t, os.Symlink("../README", filepath.Join(src, "bin/readme-link")))
	require.NoError(t, os.Symlink("does-not-exist", filepath.Join(src, "dangling")))
	writeFile(t, filepath.Join(src, "empty-file"), "", 0o644)
	randomFile(t, filepath.Join(src, "big.bin"), 100<<20, 1)
	for i := range 10000 {
		writeFile(t, filepath.Join(src, "many", strconv.Itoa(i%50), strconv.Itoa(i)+".txt"), "file "+strconv.Itoa(i)+"\n", 0o644)
	}
	require.NoError(t, os.Chtimes(filepath.Join(src, "README"), fixedTime, fixedTime))

	start := time.Now()
	r := e.push("A", t.TempDir(), Mount{Dir: src})
	t.Logf("push: %v", time.Since(start))
	require.Equal(t, 10000+5, r.Files)
	require.Greater(t, r.Layers, 1, "a 100 MB delta is split into several layers")

	dst := t.TempDir()
	start = time.Now()
	pr := e.pull([]string{"A"}, t.TempDir(), Mount{Dir: dst})
	t.Logf("pull: %v", time.Since(start))
	require.Equal(t, []string{"A"}, pr.Applied)
	require.Equal(t, snapshot(t, src), snapshot(t, dst))

	// the same content pushed again (a retried task) uploads no layer
	r2 := e.push("A", t.TempDir(), Mount{Dir: src})
	require.Equal(t, 0, r2.Uploaded)
	require.Equal(t, r.Layers, r2.Layers)
}

func TestNoChangeAndEmpty(t *testing.T) {
	e := newEnv(t)
	dir, state := t.TempDir(), t.TempDir()
	// an empty workspace, no ancestors: nothing to pull, a tiny manifest pushed
	start := time.Now()
	e.pull(nil, state, Mount{Dir: dir})
	r := e.push("first", state, Mount{Dir: dir})
	t.Logf("empty pull+push: %v", time.Since(start))
	require.Equal(t, 0, r.Layers)
	require.Equal(t, 0, r.Files)

	writeFile(t, filepath.Join(dir, "a/b.txt"), "x", 0o644)
	e.push("second", state, Mount{Dir: dir})
	dir2, state2 := t.TempDir(), t.TempDir()
	e.pull([]string{"first", "second"}, state2, Mount{Dir: dir2})
	start = time.Now()
	r = e.push("third", state2, Mount{Dir: dir2})
	t.Logf("no-change push: %v", time.Since(start))
	require.Equal(t, 0, r.Layers)
	require.Equal(t, 0, r.Deletions)
}

func TestDeltaChain(t *testing.T) {
	e := newEnv(t)
	e.task("a", nil, func(d string) {
		writeFile(t, filepath.Join(d, "keep.txt"), "keep", 0o644)
		writeFile(t, filepath.Join(d, "change.txt"), "v1", 0o644)
		writeFile(t, filepath.Join(d, "gone.txt"), "bye", 0o644)
		writeFile(t, filepath.Join(d, "gonedir/x/y"), "bye", 0o644)
		writeFile(t, filepath.Join(d, "retype"), "file", 0o644)
	})
	b := e.task("b", []string{"a"}, func(d string) {
		writeFile(t, filepath.Join(d, "change.txt"), "version two", 0o600)
		require.NoError(t, os.Remove(filepath.Join(d, "gone.txt")))
		require.NoError(t, os.RemoveAll(filepath.Join(d, "gonedir")))
		require.NoError(t, os.Remove(filepath.Join(d, "retype")))
		writeFile(t, filepath.Join(d, "retype/inner"), "now a dir", 0o644)
		writeFile(t, filepath.Join(d, "new/file"), "new", 0o644)
	})
	c, state := t.TempDir(), t.TempDir()
	r := e.pull([]string{"a", "b"}, state, Mount{Dir: c})
	require.Equal(t, 0, r.Conflicts, "b built on a: not a conflict")
	require.Equal(t, snapshot(t, b), snapshot(t, c))
	_, err := os.Stat(filepath.Join(c, "gone.txt"))
	require.True(t, os.IsNotExist(err))
}

func TestFanIn(t *testing.T) {
	e := newEnv(t)
	e.task("base", nil, func(d string) {
		writeFile(t, filepath.Join(d, "x.txt"), "x0", 0o644)
		writeFile(t, filepath.Join(d, "y.txt"), "y0", 0o644)
		writeFile(t, filepath.Join(d, "shared.txt"), "s0", 0o644)
	})
	e.task("left", []string{"base"}, func(d string) {
		writeFile(t, filepath.Join(d, "x.txt"), "x-left", 0o644)
		writeFile(t, filepath.Join(d, "left-only/new.txt"), "L", 0o644)
		writeFile(t, filepath.Join(d, "shared.txt"), "s-left", 0o644)
	})
	e.task("right", []string{"base"}, func(d string) {
		writeFile(t, filepath.Join(d, "y.txt"), "y-right", 0o644)
		require.NoError(t, os.Remove(filepath.Join(d, "x.txt"))) // deletes what left changed: a race
		writeFile(t, filepath.Join(d, "shared.txt"), "s-right", 0o644)
	})
	j, state := t.TempDir(), t.TempDir()
	r := e.pull([]string{"base", "left", "right"}, state, Mount{Dir: j})
	require.Equal(t, 2, r.Conflicts) // shared.txt overwritten, x.txt deleted
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(j, p)); return string(b) }
	require.Equal(t, "y-right", read("y.txt"))
	require.Equal(t, "L", read("left-only/new.txt"))
	require.Equal(t, "s-right", read("shared.txt"), "later delta wins")
	_, err := os.Stat(filepath.Join(j, "x.txt"))
	require.True(t, os.IsNotExist(err))
}

func TestSubPathMounts(t *testing.T) {
	e := newEnv(t)
	// task "clone" views subPath git at src, subPath bucket at out
	src, out, st := t.TempDir(), t.TempDir(), t.TempDir()
	e.pull(nil, st, Mount{Dir: src, SubPath: "git"}, Mount{Dir: out, SubPath: "bucket"})
	writeFile(t, filepath.Join(src, "a.txt"), "code", 0o644)
	writeFile(t, filepath.Join(out, "artifact.bin"), "bin", 0o644)
	e.push("clone", st, Mount{Dir: src, SubPath: "git"}, Mount{Dir: out, SubPath: "bucket"})

	// a task mounting the root sees both under their subPaths
	root, st2 := t.TempDir(), t.TempDir()
	e.pull([]string{"clone"}, st2, Mount{Dir: root})
	b, err := os.ReadFile(filepath.Join(root, "git/a.txt"))
	require.NoError(t, err)
	require.Equal(t, "code", string(b))
	_, err = os.Stat(filepath.Join(root, "bucket/artifact.bin"))
	require.NoError(t, err)
	// it changes git/ and its push composes with the subPath view
	writeFile(t, filepath.Join(root, "git/b.txt"), "more", 0o644)
	e.push("build", st2, Mount{Dir: root})

	// a task mounting only bucket does not get git's files
	bucket, st3 := t.TempDir(), t.TempDir()
	e.pull([]string{"clone", "build"}, st3, Mount{Dir: bucket, SubPath: "bucket"})
	require.Equal(t, []string{"artifact.bin"}, names(t, bucket))
	// a task mounting git sees both files at its root
	git, st4 := t.TempDir(), t.TempDir()
	e.pull([]string{"clone", "build"}, st4, Mount{Dir: git, SubPath: "git"})
	require.Equal(t, []string{"a.txt", "b.txt"}, names(t, git))

	// two views of the same storage in one task (root and root/git): written once, pushed once
	shared, st5 := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(shared, "git"), 0o755))
	e.pull([]string{"clone", "build"}, st5, Mount{Dir: shared}, Mount{Dir: filepath.Join(shared, "git"), SubPath: "git"})
	require.Equal(t, []string{"a.txt", "b.txt"}, names(t, filepath.Join(shared, "git")))
	writeFile(t, filepath.Join(shared, "git", "c.txt"), "c", 0o644)
	r := e.push("twice", st5, Mount{Dir: shared}, Mount{Dir: filepath.Join(shared, "git"), SubPath: "git"})
	require.Equal(t, 1, r.Files)
}

func names(t *testing.T, dir string) []string {
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestMissingTagAndRepository(t *testing.T) {
	e := newEnv(t)
	dir, st := t.TempDir(), t.TempDir()
	pull := func(from, optional []string) (*PullResult, error) {
		return Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: from, Optional: optional,
			Mounts: []Mount{{Dir: dir}}, StateDir: st})
	}
	// the repository does not exist yet: nothing to pull from an optional
	// producer (skipped by when), an error for one that must have pushed
	r, err := pull([]string{"never"}, []string{"never"})
	require.NoError(t, err)
	require.Equal(t, []string{"never"}, r.Skipped)
	_, err = pull([]string{"never"}, nil)
	require.Equal(t, ExitMissing, ExitCode(err), err)
	require.ErrorContains(t, err, "never is missing from")

	e.task("present", nil, func(d string) { writeFile(t, filepath.Join(d, "f"), "f", 0o644) })
	r, err = pull([]string{"skipped-by-when", "present"}, []string{"skipped-by-when"})
	require.NoError(t, err)
	require.Equal(t, []string{"skipped-by-when"}, r.Skipped)
	require.Equal(t, []string{"present"}, r.Applied)
	_, err = pull([]string{"lost", "present"}, nil)
	require.Equal(t, ExitMissing, ExitCode(err), err)
}

func TestMatrixInstances(t *testing.T) {
	e := newEnv(t)
	for _, inst := range []string{"build.run-b", "build.run-a", "builder"} {
		e.task(inst, nil, func(d string) { writeFile(t, filepath.Join(d, inst), inst, 0o644) })
	}
	r := e.pull([]string{"build"}, t.TempDir(), Mount{Dir: t.TempDir()})
	require.Equal(t, []string{"build.run-a", "build.run-b"}, r.Applied, "T.* in sorted order; 'builder' is another task")
}

func TestTagListPagination(t *testing.T) {
	e := newEnv(t)
	defer func(n int) { tagListPageSize = n }(tagListPageSize)
	tagListPageSize = 2
	want := []string{}
	for i := range 5 {
		tag := "m.r" + strconv.Itoa(i)
		want = append(want, tag)
		e.task(tag, nil, func(d string) { writeFile(t, filepath.Join(d, tag), tag, 0o644) })
	}
	dir := t.TempDir()
	r := e.pull([]string{"m"}, t.TempDir(), Mount{Dir: dir})
	require.Equal(t, want, r.Applied)
	require.Len(t, names(t, dir), 5)
}

func TestRegistryStoppedMidPush(t *testing.T) {
	needRegistry(t)
	reg, err := startRegistry(os.Getenv("REGISTRY_BIN"), "")
	require.NoError(t, err)
	defer reg.close()
	src := t.TempDir()
	for i := range 12 {
		randomFile(t, filepath.Join(src, "f"+strconv.Itoa(i)), 1<<20, uint64(i))
	}
	var once sync.Once
	restarted := make(chan error, 1)
	testHookBlobPushed = func() {
		once.Do(func() {
			reg.stop()
			go func() { time.Sleep(time.Second); restarted <- reg.start() }()
		})
	}
	defer func() { testHookBlobPushed = nil }()
	o := reg.opts(t, "mid/push")
	o.Retries, o.Concurrency = 8, 2
	r, err := Push(context.Background(), PushOptions{Options: o, Tag: "t", Mounts: []Mount{{Dir: src}}, StateDir: t.TempDir(), LayerSize: 1 << 20})
	require.NoError(t, <-restarted)
	require.NoError(t, err)
	require.Equal(t, 12, r.Layers)
	dst := t.TempDir()
	_, err = Pull(context.Background(), PullOptions{Options: reg.opts(t, "mid/push"), From: []string{"t"}, Mounts: []Mount{{Dir: dst}}, StateDir: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, snapshot(t, src), snapshot(t, dst))
}

func TestRegistryUnreachable(t *testing.T) {
	addr, err := freePort()
	require.NoError(t, err)
	_, err = Pull(context.Background(), PullOptions{Options: Options{Registry: addr, Repository: "x/y", PlainHTTP: true, Retries: 2, RetryBaseDelay: 10 * time.Millisecond},
		From: []string{"a"}, Mounts: []Mount{{Dir: t.TempDir()}}, StateDir: t.TempDir()})
	require.Error(t, err)
	require.Equal(t, ExitFailed, ExitCode(err))
	require.Contains(t, err.Error(), "after 3 attempts")
}

func TestTamperedBlobRefused(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "data.txt"), strings.Repeat("precious data ", 1000), 0o644)
	r := e.push("victim", t.TempDir(), Mount{Dir: src})
	require.Equal(t, 1, r.Layers)
	// find the layer in the registry's storage and flip a byte
	m := fetchManifestForTest(t, e, "victim")
	l := m.Layers[0].Digest
	blob := filepath.Join(e.reg.dir, "data/docker/registry/v2/blobs/sha256", l.Encoded()[:2], l.Encoded(), "data")
	data, err := os.ReadFile(blob)
	require.NoError(t, err)
	data[len(data)/2] ^= 0xff
	require.NoError(t, os.WriteFile(blob, data, 0o644))
	_, err = Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{"victim"}, Mounts: []Mount{{Dir: t.TempDir()}}, StateDir: t.TempDir()})
	require.Error(t, err)
	require.Equal(t, ExitRefused, ExitCode(err), err.Error())
	require.Contains(t, err.Error(), l.String())
}

func TestOrasInterop(t *testing.T) {
	e := newEnv(t)
	oras := needBin(t, "ORAS_BIN")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a.txt"), "alpha", 0o644)
	writeFile(t, filepath.Join(src, "dir/b.txt"), strings.Repeat("bravo ", 10000), 0o644)
	randomFile(t, filepath.Join(src, "dir/rand.bin"), 3<<20, 7)
	require.NoError(t, os.Symlink("dir/b.txt", filepath.Join(src, "link")))
	_, err := Push(context.Background(), PushOptions{Options: e.reg.opts(t, e.repo), Tag: "gz", Mounts: []Mount{{Dir: src}},
		StateDir: t.TempDir(), Compression: CompressionGzip, LayerSize: 1 << 20})
	require.NoError(t, err)
	out := t.TempDir()
	cmd := exec.Command(oras, "pull", "--plain-http", "-o", out, e.reg.addr+"/"+e.repo+":gz")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	// each layer unpacks into its own ws-NNN folder; together they are the tree
	got := map[string]string{}
	layers, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Greater(t, len(layers), 1)
	for _, l := range layers {
		for p, v := range snapshot(t, filepath.Join(out, l.Name())) {
			if strings.HasPrefix(v, "dir") {
				continue
			}
			got[p] = contentOnly(v)
		}
	}
	want := map[string]string{}
	for p, v := range snapshot(t, src) {
		if !strings.HasPrefix(v, "dir") {
			want[p] = contentOnly(v)
		}
	}
	require.Equal(t, want, got)
}

// contentOnly drops mode and mtime (oras does not restore them by default).
func contentOnly(v string) string {
	f := strings.Fields(v)
	if f[0] == "file" {
		return f[2] + " " + f[3]
	}
	return v
}

func TestExitCodes(t *testing.T) {
	require.Equal(t, ExitUsage, ExitCode(usagef("x")))
	require.Equal(t, ExitRefused, ExitCode(refuse("a", "b")))
	require.Equal(t, ExitFailed, ExitCode(errors.New("io")))
	require.Equal(t, ExitOK, ExitCode(nil))
	_, err := Push(context.Background(), PushOptions{Options: Options{Registry: "r", Repository: "x"}, Tag: "bad tag!", Mounts: []Mount{{Dir: t.TempDir()}}})
	require.Equal(t, ExitUsage, ExitCode(err))
}
