package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// The pull's baseline (issue 16): for every path the deltas wrote, as it
// now is on disk. It used to be a scan of the whole mounts (a record of
// every path, 80 bytes plus the path, with copies while the walk merged
// directories) filtered by what was written; now every written path is
// looked up where the scan would have found it, and its record is encoded
// as soon as it is made: nothing per entry is held but what writtenSet
// already holds. The result is the same set of records (TestPullBaseline...),
// in the order of writtenSet.sorted rather than the walk's, which the
// baseline's reader does not depend on.

// baselineMemory is how much of the encoded records stays in memory before
// they go to an unlinked file in the state directory (the count comes
// before them in the file).
var baselineMemory = 1 << 20 // a variable for the tests

// recordSpill holds the encoded records until their count is known.
type recordSpill struct {
	dir string
	mem bytes.Buffer
	f   *os.File
	bw  *bufio.Writer
}

func (s *recordSpill) writer() (*bufio.Writer, error) {
	if s.bw != nil {
		return s.bw, nil
	}
	if s.mem.Len() < baselineMemory {
		return nil, nil
	}
	f, err := os.CreateTemp(s.dir, ".baseline-records-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	s.f = f
	s.bw = bufio.NewWriterSize(f, 256<<10)
	if _, err := s.bw.Write(s.mem.Bytes()); err != nil {
		return nil, err
	}
	s.mem = bytes.Buffer{}
	return s.bw, nil
}

func (s *recordSpill) close() {
	if s.f != nil {
		s.f.Close()
	}
}

// copyTo writes the records to w.
func (s *recordSpill) copyTo(w io.Writer) error {
	if s.f == nil {
		_, err := w.Write(s.mem.Bytes())
		return err
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(w, s.f)
	return err
}

// appendRecord encodes a record as writeBaseline does.
func appendRecord(b []byte, r *record) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.path)))
	b = append(b, r.path...)
	b = append(b, r.typ)
	b = binary.AppendUvarint(b, uint64(r.mode))
	b = binary.AppendUvarint(b, uint64(r.uid))
	b = binary.AppendUvarint(b, uint64(r.gid))
	b = binary.AppendVarint(b, r.size)
	b = binary.AppendVarint(b, r.mtime)
	b = binary.AppendVarint(b, r.ctime)
	b = binary.AppendUvarint(b, uint64(len(r.link)))
	return append(b, r.link...)
}

// baselineFinder finds a workspace path where scanMounts would have: in the
// first mount (not covered, in order) that shows it, reached from the mount
// root one directory at a time without following a symlink.
type baselineFinder struct {
	mounts []*mount
	dirs   []map[string]int // per mount: open directories (O_PATH)
	w      walker
	// lent are directories of the pull's own user without search
	// permission (mode 000), widened to stat what is in them (lend.go)
	lent []lentDir
}

// finderDirFlags open a directory only to look up names in it: O_PATH needs
// no read permission on it (a 0300 dropbox), only search on its parent.
const finderDirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// lendSearch gives the pull's user search permission on a directory it owns
// and cannot search (a 000 directory the deltas made), to be given back by
// restore: the baseline must stat what is in it, as the scan did as root.
func (f *baselineFinder) lendSearch(pfd int, base, full string, fd int) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&0o100 != 0 || !lendable(st.Uid) {
		return
	}
	mode := st.Mode & 0o7777
	if unix.Fchmodat(pfd, base, mode|0o100, 0) == nil {
		f.lent = append(f.lent, lentDir{path: full, mode: mode})
	}
}

// restore gives lent directories their modes back, innermost first.
func (f *baselineFinder) restore() error {
	slices.SortFunc(f.lent, func(a, b lentDir) int { return len(b.path) - len(a.path) })
	var first error
	for _, d := range f.lent {
		if err := unix.Chmod(d.path, d.mode); err != nil && first == nil {
			first = fmt.Errorf("giving %s its mode back: %w", d.path, err)
		}
	}
	f.lent = nil
	return first
}

func newBaselineFinder(mounts []*mount) *baselineFinder {
	f := &baselineFinder{mounts: mounts, dirs: make([]map[string]int, len(mounts))}
	for i := range f.dirs {
		f.dirs[i] = map[string]int{}
	}
	return f
}

func (f *baselineFinder) close() {
	for _, m := range f.dirs {
		for _, fd := range m {
			unix.Close(fd)
		}
		clear(m)
	}
}

// dir opens the directory local of mount mi; ok is false when the scan
// would not reach it (missing, not a directory, a symlink on the way).
func (f *baselineFinder) dir(mi int, local string) (fd int, ok bool, err error) {
	cache := f.dirs[mi]
	if fd, ok := cache[local]; ok {
		return fd, true, nil
	}
	if len(cache) > maxCachedDirs {
		f.close()
	}
	if local == "" {
		fd, err := unix.Open(f.mounts[mi].abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, false, fmt.Errorf("mount %s: %w", f.mounts[mi].abs, err)
		}
		cache[local] = fd
		return fd, true, nil
	}
	parent, base := splitLocal(local)
	pfd, ok, err := f.dir(mi, parent)
	if !ok || err != nil {
		return -1, ok, err
	}
	fd, err = unix.Openat(pfd, base, finderDirFlags, 0)
	switch err {
	case nil:
		f.lendSearch(pfd, base, filepath.Join(f.mounts[mi].abs, local), fd)
		f.dirs[mi][local] = fd // the cache may have been cleared meanwhile
		return fd, true, nil
	case unix.ENOENT, unix.ENOTDIR, unix.ELOOP:
		return -1, false, nil
	}
	return -1, false, fmt.Errorf("open %s: %w", filepath.Join(f.mounts[mi].abs, local), err)
}

// find returns the record of workspace path p as the scan of the mounts
// would have made it; ok is false when no mount has it (or has something
// the scan leaves out: a socket, a device).
func (f *baselineFinder) find(p string) (r record, ok bool, err error) {
	for mi, m := range f.mounts {
		if m.covered {
			continue
		}
		local, shows := m.local(p)
		if !shows {
			continue
		}
		ldir, base := splitLocal(local)
		var fd int
		var st unix.Stat_t
		full := filepath.Join(m.abs, local)
		if local == "" { // the view's root, which scanMount records
			fd, _, err = f.dir(mi, "")
			if err != nil {
				return r, false, err
			}
			if err := unix.Fstat(fd, &st); err != nil {
				return r, false, fmt.Errorf("mount %s: %w", m.abs, err)
			}
		} else {
			var found bool
			fd, found, err = f.dir(mi, ldir)
			if err != nil {
				return r, false, err
			}
			if !found {
				continue
			}
			if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if err == unix.ENOENT {
					continue
				}
				return r, false, fmt.Errorf("stat %s: %w", full, err)
			}
		}
		f.w.mnt = uint16(mi)
		r, keep, err := f.w.statRecordAt(fd, base, full, p, &st)
		if err != nil {
			return r, false, err
		}
		if keep {
			return r, true, nil
		}
	}
	return r, false, nil
}

// writePullBaseline writes the baseline: the manifests considered, the
// views, and the record of every path in ws found on disk. It returns how
// many records it wrote.
func writePullBaseline(stateDir string, applied []string, mounts []*mount, ws *writtenSet) (count int, err error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return 0, err
	}
	spill := &recordSpill{dir: stateDir}
	defer spill.close()
	if ws != nil {
		f := newBaselineFinder(mounts)
		defer f.close()
		defer func() {
			if rerr := f.restore(); rerr != nil && err == nil {
				err = rerr
			}
		}()
		var enc []byte
		for _, k := range ws.sorted() {
			r, ok, err := f.find(ws.path(&ws.ents[k]))
			if err != nil {
				return 0, err
			}
			if !ok {
				continue
			}
			enc = appendRecord(enc[:0], &r)
			bw, err := spill.writer()
			if err != nil {
				return 0, err
			}
			if bw != nil {
				_, err = bw.Write(enc)
			} else {
				_, err = spill.mem.Write(enc)
			}
			if err != nil {
				return 0, err
			}
			count++
		}
	}
	tmp, err := os.CreateTemp(stateDir, ".baseline-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 256<<10)
	var h []byte
	h = append(h, "OTB2"...)
	str := func(s string) { h = binary.AppendUvarint(h, uint64(len(s))); h = append(h, s...) }
	h = binary.AppendUvarint(h, uint64(len(applied)))
	for _, a := range applied {
		str(a)
	}
	h = binary.AppendUvarint(h, uint64(len(mounts)))
	for _, m := range mounts {
		str(m.abs)
		str(m.SubPath)
		str(m.view)
	}
	h = binary.AppendUvarint(h, uint64(count))
	bw.Write(h)
	err = spill.copyTo(bw)
	if err == nil {
		err = bw.Flush()
	}
	// The pull and the push may run as different users (a root first step,
	// a non-root last step): the baseline holds only metadata, let both read it.
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return count, os.Rename(tmp.Name(), filepath.Join(stateDir, baselineFile))
}
