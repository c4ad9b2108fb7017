package transport

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

type fileSpec struct {
	name     string
	mode     int64
	uid, gid int
	size     int
	linked   bool   // PAX linked=1 (the data of a file with several names)
	link     string // a hard link to this name
}

func tarOf(t *testing.T, files ...fileSpec) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: "ws-000/" + f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: fixedTime, Format: tar.FormatPAX}
		if f.link != "" {
			h.Typeflag, h.Linkname = tar.TypeLink, "ws-000/"+f.link
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(f.size)
		}
		if f.linked {
			h.PAXRecords = map[string]string{paxLinkedKey: "1"}
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write(content(f.name, f.size))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// content is a file's deterministic data, different per name.
func content(name string, size int) []byte {
	b := bytes.Repeat([]byte(name+"\n"), size/(len(name)+1)+1)
	return b[:size]
}

func extractWith(t *testing.T, data []byte, ms []Mount) *extractor {
	t.Helper()
	mounts, err := prepareMounts(ms)
	require.NoError(t, err)
	ex, err := newExtractor(mounts, Limits{})
	require.NoError(t, err)
	t.Cleanup(ex.close)
	require.NoError(t, ex.extractTar(bytes.NewReader(data), "ws-000", nil))
	require.NoError(t, ex.finish())
	return ex
}

// TestExtractedModesUnderUmasks: files are created with their mode where the
// umask leaves it whole and the fchmod is then skipped (issue 15); every
// file still ends with exactly its mode, whatever the umask, several files
// in one directory (the first teaches what the next ones get), the special
// bits too.
func TestExtractedModesUnderUmasks(t *testing.T) {
	modes := []int64{0o644, 0o664, 0o755, 0o600, 0o444, 0o000, 0o777, 0o4755, 0o2755, 0o1777, 0o640, 0o666}
	for _, umask := range []int{0o022, 0o000, 0o077, 0o002} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			var files []fileSpec
			for i, m := range modes {
				for _, dir := range []string{"", "d/", "e/f/"} {
					files = append(files, fileSpec{name: fmt.Sprintf("%sf%d", dir, i), mode: m, uid: os.Getuid(), gid: os.Getgid(), size: i * 10})
				}
			}
			root := t.TempDir()
			ex := extractWith(t, tarOf(t, files...), []Mount{{Dir: root}})
			require.Equal(t, umask, ex.umask)
			for _, f := range files {
				fi, err := os.Lstat(filepath.Join(root, f.name))
				require.NoError(t, err)
				require.Equal(t, fileMode(f.mode), fi.Mode(), f.name)
				require.Equal(t, int64(f.size), fi.Size())
				require.Equal(t, fixedTime.UnixNano(), fi.ModTime().UnixNano())
			}
		})
	}
}

// TestExtractedOwnersAsRoot: as root every file gets its recorded owner,
// whether or not it is the one a new file gets (the fchown is skipped only
// then), also in a setgid directory, where a new file takes the
// directory's group.
func TestExtractedOwnersAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "sg"), 0o755))
	require.NoError(t, os.Chown(filepath.Join(root, "sg"), 0, 4321))
	require.NoError(t, os.Chmod(filepath.Join(root, "sg"), 0o2775))
	owners := [][2]int{{0, 0}, {1234, 5678}, {0, 0}, {0, 4321}, {1234, 4321}, {0, 0}}
	var files []fileSpec
	for i, o := range owners {
		for _, dir := range []string{"", "sg/", "new/"} {
			files = append(files, fileSpec{name: fmt.Sprintf("%sf%d", dir, i), mode: 0o644, uid: o[0], gid: o[1], size: 3})
		}
	}
	extractWith(t, tarOf(t, files...), []Mount{{Dir: root}})
	for _, f := range files {
		fi, err := os.Lstat(filepath.Join(root, f.name))
		require.NoError(t, err)
		st := statT(fi)
		require.Equal(t, [2]int{f.uid, f.gid}, [2]int{int(st.Uid), int(st.Gid)}, f.name)
		require.Equal(t, fs.FileMode(0o644), fi.Mode(), f.name)
	}
}

// TestExtractedModesUnderADefaultACL: in a directory with a default ACL a
// new file's mode is not the one asked less the umask; the fchmod is not
// skipped there.
func TestExtractedModesUnderADefaultACL(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "acl")
	require.NoError(t, os.Mkdir(dir, 0o755))
	// system.posix_acl_default: version 2, then {tag, perm, id}: user::rw-
	// group::r-- other::--- (a new file asked 0755 would come out 0640)
	var acl []byte
	acl = binary.LittleEndian.AppendUint32(acl, 2)
	for _, e := range [][2]uint16{{0x01, 6}, {0x04, 4}, {0x20, 0}} {
		acl = binary.LittleEndian.AppendUint16(acl, e[0])
		acl = binary.LittleEndian.AppendUint16(acl, e[1])
		acl = binary.LittleEndian.AppendUint32(acl, 0xffffffff)
	}
	if err := unix.Setxattr(dir, "system.posix_acl_default", acl, 0); err != nil {
		t.Skipf("no POSIX ACLs here: %v", err)
	}
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	// the first file comes out as asked (0640 under this ACL too), the next
	// ones would not
	var files []fileSpec
	for i, m := range []int64{0o640, 0o755, 0o644, 0o700, 0o755} {
		files = append(files, fileSpec{name: fmt.Sprintf("acl/f%d", i), mode: m, uid: os.Getuid(), gid: os.Getgid(), size: 1})
	}
	extractWith(t, tarOf(t, files...), []Mount{{Dir: root}})
	for _, f := range files {
		fi, err := os.Lstat(filepath.Join(root, f.name))
		require.NoError(t, err)
		require.Equal(t, fileMode(f.mode), fi.Mode(), f.name)
	}
}

// TestExtractedSizesAroundTheBuffer: a file up to the copy buffer is read
// into it (no allocation per file), one up to smallFile into its own slice,
// a bigger one streamed; all reach every mount that shows them intact,
// the files after them too.
func TestExtractedSizesAroundTheBuffer(t *testing.T) {
	buf := 256 << 10
	sizes := []int{0, 1, buf - 1, buf, buf + 1, 7, smallFile, smallFile + 1, 3*smallFile + 5, 2}
	var files []fileSpec
	for i, sz := range sizes {
		files = append(files, fileSpec{name: fmt.Sprintf("d/f%d", i), mode: 0o644, uid: os.Getuid(), gid: os.Getgid(), size: sz})
	}
	a, b := t.TempDir(), t.TempDir()
	extractWith(t, tarOf(t, files...), []Mount{{Dir: a}, {Dir: b, SubPath: "d"}}) // two storages show d/
	for _, f := range files {
		for _, p := range []string{filepath.Join(a, f.name), filepath.Join(b, strings.TrimPrefix(f.name, "d/"))} {
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.True(t, bytes.Equal(content(f.name, f.size), data), "%s: %d bytes", p, len(data))
		}
	}
}

// TestOrphansSpillPastTheLayersMemory: the data of files no mount shows,
// kept for their other names, stays in memory up to orphanMemory for the
// whole layer (before, each such file could keep its own 8 MiB), then
// spills; every name shown gets its data.
func TestOrphansSpillPastTheLayersMemory(t *testing.T) {
	sz := orphanMemory/3 + 1 // three fit in memory no more
	var files []fileSpec
	for i := range 4 {
		files = append(files, fileSpec{name: fmt.Sprintf("hidden/f%d", i), mode: 0o644, size: sz, linked: true})
	}
	for i := range 4 {
		files = append(files, fileSpec{name: fmt.Sprintf("view/l%d", i), link: fmt.Sprintf("hidden/f%d", i)})
	}
	root := t.TempDir()
	mounts, err := prepareMounts([]Mount{{Dir: root, SubPath: "view"}})
	require.NoError(t, err)
	ex, err := newExtractor(mounts, Limits{})
	require.NoError(t, err)
	defer ex.close()
	ex.spillDir = t.TempDir()
	ls := &layerState{files: map[string]*layerFile{}, dirs: []map[string]int{{}}}
	defer ls.close()
	require.NoError(t, ex.extractEntries(ls, bytes.NewReader(tarOf(t, files...)), "ws-000", nil))
	require.LessOrEqual(t, ls.orphanMem, int64(orphanMemory))
	var spilled int
	for i := range 4 {
		o := ls.files[fmt.Sprintf("hidden/f%d", i)].orphan
		require.NotNil(t, o)
		if o.f != nil {
			spilled++
			require.Zero(t, o.mem.Cap(), "a spilled orphan keeps no memory")
		}
	}
	require.Equal(t, 2, spilled)
	for i := range 4 {
		data, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("l%d", i)))
		require.NoError(t, err)
		require.True(t, bytes.Equal(content(fmt.Sprintf("hidden/f%d", i), sz), data), "l%d", i)
	}
}
