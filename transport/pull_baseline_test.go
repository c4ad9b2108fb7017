package transport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// oldPullBaseline is the baseline as the pull wrote it before issue 16: a
// scan of the mounts, kept where the deltas wrote.
func oldPullBaseline(t *testing.T, stateDir string, applied []string, mounts []*mount, ws *writtenSet) {
	t.Helper()
	recs, err := scanMounts(mounts, false, nil)
	require.NoError(t, err)
	kept := recs[:0]
	for _, r := range recs {
		if _, ok := ws.get(r.path); ok {
			kept = append(kept, r)
		}
	}
	require.NoError(t, writeBaseline(stateDir, applied, mounts, kept))
}

// requireSameBaseline writes the baseline both ways and compares what the
// push reads of them.
func requireSameBaseline(t *testing.T, mounts []*mount, ws *writtenSet, wantRecords int) {
	t.Helper()
	n := requireSameBaselineIn(t, t.TempDir(), mounts, ws)
	require.Equal(t, wantRecords, n)
}

// requireSameBaselineIn does it with state directories in dir and returns
// the number of records.
func requireSameBaselineIn(t *testing.T, dir string, mounts []*mount, ws *writtenSet) int {
	t.Helper()
	applied := []string{"sha256:aa", "sha256:bb"}
	oldDir, newDir := filepath.Join(dir, "state-old"), filepath.Join(dir, "state-new")
	oldPullBaseline(t, oldDir, applied, mounts, ws)
	n, err := writePullBaseline(newDir, applied, mounts, ws)
	require.NoError(t, err)
	ob, err := readBaseline(oldDir)
	require.NoError(t, err)
	nb, err := readBaseline(newDir)
	require.NoError(t, err)
	require.Equal(t, ob.applied, nb.applied)
	require.Equal(t, ob.views, nb.views)
	require.Equal(t, ob.records, nb.records)
	require.Len(t, nb.records, n)
	fi, err := os.Stat(filepath.Join(newDir, baselineFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	return n
}

func wsOf(paths ...string) *writtenSet {
	ws := newWrittenSet()
	for _, p := range paths {
		ws.set(p, writer{})
	}
	return ws
}

// TestPullBaselineMatchesTheScan: the baseline written from the written
// paths (issue 16) holds the same records as the scan of the mounts kept
// where the deltas wrote: files, directories, symlinks, FIFOs, view roots,
// several views, a covered view, and what the scan never reaches (below a
// symlink, below a file, outside every view, gone, a socket).
func TestPullBaselineMatchesTheScan(t *testing.T) {
	for _, small := range []bool{false, true} {
		name := "in memory"
		if small {
			name = "spilled"
		}
		t.Run(name, func(t *testing.T) {
			if small {
				old := baselineMemory
				baselineMemory = 64 // the records go to a file after 64 bytes
				t.Cleanup(func() { baselineMemory = old })
			}
			t.Run("one mount", func(t *testing.T) {
				root := t.TempDir()
				writeFile(t, filepath.Join(root, "a/b/c.txt"), "c", 0o640)
				writeFile(t, filepath.Join(root, "a/x"), "x", 0o755)
				writeFile(t, filepath.Join(root, "other"), "not written", 0o644)
				writeFile(t, filepath.Join(root, "afile"), "f", 0o644)
				require.NoError(t, os.Symlink("a/b", filepath.Join(root, "lnk")))
				require.NoError(t, os.Symlink("/etc", filepath.Join(root, "abs")))
				require.NoError(t, syscall.Mkfifo(filepath.Join(root, "a/fifo"), 0o600))
				require.NoError(t, os.Chmod(filepath.Join(root, "a"), 0o2750))
				l, err := net.Listen("unix", filepath.Join(root, "sock"))
				require.NoError(t, err)
				defer l.Close()
				ms, err := prepareMounts([]Mount{{Dir: root}})
				require.NoError(t, err)
				ws := wsOf("a", "a/b", "a/b/c.txt", "a/x", "a/fifo", "lnk", "abs",
					"lnk/c.txt",  // below a symlink: the scan does not follow it
					"afile/y",    // below a file
					"gone/z",     // not there
					"a/b/gone",   // not there
					"sock",       // a socket is not recorded
					"a/b/c.txt/", // not clean: never found
				)
				requireSameBaseline(t, ms, ws, 7)
			})
			t.Run("views", func(t *testing.T) {
				ws1, ws2, ws3 := t.TempDir(), t.TempDir(), t.TempDir()
				writeFile(t, filepath.Join(ws1, "f"), "in the view src", 0o644)
				writeFile(t, filepath.Join(ws1, "out/g"), "g", 0o600)
				writeFile(t, filepath.Join(ws2, "h"), "in the view docs", 0o644)
				writeFile(t, filepath.Join(ws3, "f"), "another storage for src/f", 0o644)
				ms, err := prepareMounts([]Mount{
					{Dir: ws1, SubPath: "src"},
					{Dir: filepath.Join(ws1, "out"), SubPath: "src/out"}, // covered: the same directory
					{Dir: ws2, SubPath: "docs"},
					{Dir: ws3, SubPath: "src"}, // a second storage: the scan keeps the first
				})
				require.NoError(t, err)
				ws := wsOf("src", "src/f", "src/out", "src/out/g", "docs", "docs/h", "docs/none", "elsewhere/x", "")
				requireSameBaseline(t, ms, ws, 6)
			})
			t.Run("nothing written", func(t *testing.T) {
				root := t.TempDir()
				writeFile(t, filepath.Join(root, "sidecar.txt"), "s", 0o644)
				ms, err := prepareMounts([]Mount{{Dir: root}})
				require.NoError(t, err)
				requireSameBaseline(t, ms, newWrittenSet(), 0)
				n, err := writePullBaseline(t.TempDir(), nil, ms, nil) // no --from
				require.NoError(t, err)
				require.Zero(t, n)
			})
			t.Run("many directories", func(t *testing.T) { // over maxCachedDirs open at once
				root := t.TempDir()
				var paths []string
				for i := range 700 {
					p := filepath.Join("d", string(rune('a'+i%26)), "e"+strconv.Itoa(i), "f")
					writeFile(t, filepath.Join(root, p), "x", 0o644)
					paths = append(paths, p, filepath.Dir(p))
				}
				ms, err := prepareMounts([]Mount{{Dir: root}})
				require.NoError(t, err)
				requireSameBaseline(t, ms, wsOf(paths...), 1400)
			})
		})
	}
}
