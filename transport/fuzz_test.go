package transport

import (
	"archive/tar"
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzExtract feeds arbitrary tar streams to the extractor: it must never
// panic and never write outside the mount, not even through the symlinks it
// stores verbatim (seeds point some at a victim directory beside the mount,
// by absolute and by relative path). What the pull records of the entries
// (writtenSet, through the conflict tracker) gives the baseline the scan of
// the mount would have given (issue 16).
//
//	go test -run '^$' -fuzz FuzzExtract -fuzztime 5m ./transport/
func FuzzExtract(f *testing.F) {
	seeds := [][]tarEntry{
		{{name: "ws-000/a.txt", body: "hello"}, {name: "ws-000/d/", typ: tar.TypeDir}, {name: "ws-000/d/b", body: "b"}},
		{{name: "ws-000/l", link: "a.txt", typ: tar.TypeSymlink}, {name: "ws-000/a.txt", body: "x"}},
		{{name: "ws-000/../x", body: "x"}},
		{{name: "ws-000/l", link: "../../etc", typ: tar.TypeSymlink}},
		{{name: "ws-000/d/", typ: tar.TypeDir}, {name: "ws-000/l", link: "d", typ: tar.TypeSymlink}, {name: "ws-000/l/x", body: "x"}},
		{{name: "ws-000/f", body: "f"}, {name: "ws-000/h", link: "ws-000/f", typ: tar.TypeLink}},
		{{name: "ws-000/a/", typ: tar.TypeDir}, {name: "ws-000/a/up", link: "..", typ: tar.TypeSymlink}, {name: "ws-000/a/e", link: "up/../x", typ: tar.TypeSymlink}},
		{{name: "ws-000/p", typ: tar.TypeFifo}},
		{{name: "ws-000/v", link: "../victim", typ: tar.TypeSymlink}, {name: "ws-000/v/x", body: "x"}},
		{{name: "ws-000/d/", typ: tar.TypeDir}, {name: "ws-000/d/v", link: "../../victim", typ: tar.TypeSymlink}, {name: "ws-000/d/v/", typ: tar.TypeDir}},
		{{name: "ws-000/f", body: "f"}, {name: "ws-000/v", link: "../victim/f", typ: tar.TypeSymlink}, {name: "ws-000/v", link: "ws-000/f", typ: tar.TypeLink}},
	}
	for _, s := range seeds {
		f.Add(buildTar(f, s...))
	}
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, err := os.MkdirTemp(base, "fuzz-extract-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		mountDir := filepath.Join(parent, "mount")
		if err := os.Mkdir(filepath.Join(parent, "victim"), 0o755); err != nil {
			t.Fatal(err)
		}
		ms, err := prepareMounts([]Mount{{Dir: mountDir}})
		if err != nil {
			t.Fatal(err)
		}
		ex, err := newExtractor(ms, Limits{MaxBytes: 1 << 20, MaxEntries: 1000})
		if err != nil {
			t.Fatal(err)
		}
		ct := &conflictTracker{written: newWrittenSet(), deltas: []*delta{{tag: "fuzz"}}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		err = ex.extractTar(bytes.NewReader(data), "ws-000", ct.onEntry(0, 0))
		if err == nil {
			err = ex.finish()
		}
		ex.close()
		ents, rerr := os.ReadDir(parent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range ents {
			if e.Name() != "mount" && e.Name() != "victim" {
				t.Fatalf("wrote outside the mount: %s (err=%v)", e.Name(), err)
			}
		}
		if v, _ := os.ReadDir(filepath.Join(parent, "victim")); len(v) > 0 {
			t.Fatalf("wrote through a symlink into %s: %s (err=%v)", filepath.Join(parent, "victim"), v[0].Name(), err)
		}
		if err == nil {
			requireSameBaselineIn(t, parent, ms, ct.written)
		}
	})
}
