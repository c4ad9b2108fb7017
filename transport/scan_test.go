package transport

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// A push holds one record per path of the tree (issue 16): keep it small.
func TestRecordSize(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(record{}), uintptr(80))
}

func TestSrcRoot(t *testing.T) {
	require.Equal(t, "/ws/a/b", srcRoot{dir: "/ws"}.src(&record{path: "a/b"}))
	require.Equal(t, "/mnt/a/b", srcRoot{dir: "/mnt", view: "out/x"}.src(&record{path: "out/x/a/b"}))
}

// scanMount lists parents before children, names sorted, the view's root
// first, every record naming its mount; diff compacts the changed records
// in order into the scan's own storage.
func TestScanMountAndDiff(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"b/y/1", "b/x", "a", "c/z/2/3"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644))
	}
	recs, err := scanMount(dir, "v", 3, true, nil)
	require.NoError(t, err)
	var paths []string
	for i := range recs {
		paths = append(paths, recs[i].path)
		require.Equal(t, uint16(3), recs[i].mnt)
		require.Equal(t, len(recs), cap(recs))
	}
	require.Equal(t, []string{"v", "v/a", "v/b", "v/b/x", "v/b/y", "v/b/y/1", "v/c", "v/c/z", "v/c/z/2", "v/c/z/2/3"}, paths)
	require.Equal(t, filepath.Join(dir, "b/y/1"), srcRoot{dir: dir, view: "v"}.src(&recs[5]))

	base := map[string]*record{}
	for _, i := range []int{0, 2, 3} { // v, v/b, v/b/x unchanged
		r := recs[i]
		base[r.path] = &r
	}
	gone := record{path: "v/old", typ: typeFile}
	base[gone.path] = &gone
	changed, deleted := diff(base, recs)
	paths = nil
	for i := range changed {
		paths = append(paths, changed[i].path)
	}
	require.Equal(t, []string{"v/a", "v/b/y", "v/b/y/1", "v/c", "v/c/z", "v/c/z/2", "v/c/z/2/3"}, paths)
	require.Equal(t, []string{"v/old"}, deleted)
	require.Equal(t, &recs[0], &changed[0], "diff reuses the scan's storage")
}
