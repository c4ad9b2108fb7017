package transport

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract feeds arbitrary tar streams to the extractor: it must never
// panic, never write outside the mount, and never leave a symlink that is
// absolute or climbs out of the mount.
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
		ms, err := prepareMounts([]Mount{{Dir: mountDir}})
		if err != nil {
			t.Fatal(err)
		}
		ex, err := newExtractor(ms, Limits{MaxBytes: 1 << 20, MaxEntries: 1000})
		if err != nil {
			t.Fatal(err)
		}
		err = ex.extractTar(bytes.NewReader(data), "ws-000", nil)
		if err == nil {
			err = ex.finish()
		}
		ex.close()
		ents, rerr := os.ReadDir(parent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range ents {
			if e.Name() != "mount" {
				t.Fatalf("wrote outside the mount: %s (err=%v)", e.Name(), err)
			}
		}
		_ = filepath.WalkDir(mountDir, func(p string, d fs.DirEntry, werr error) error {
			if werr != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			target, _ := os.Readlink(p)
			rel, _ := filepath.Rel(mountDir, p)
			if path.IsAbs(target) || escapes(path.Join(path.Dir(filepath.ToSlash(rel)), target)) {
				t.Fatalf("symlink %s -> %s escapes the mount", rel, target)
			}
			return nil
		})
		_ = strings.TrimSpace
	})
}
