package transport

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Limits bound what a pull accepts.
type Limits struct {
	MaxBytes   int64 // total uncompressed file bytes
	MaxEntries int64 // total archive entries
}

// Default limits.
const (
	DefaultMaxBytes   = 64 << 30
	DefaultMaxEntries = 2_000_000
)

// extractor writes archive entries into the mounts. It never writes outside
// a mount and never follows a symlink: directories are reached one
// component at a time with O_NOFOLLOW from the mount root (extract_fs.go),
// files are created with O_EXCL|O_NOFOLLOW, and the rest goes through an
// os.Root. So symlinks are stored as they were, whatever their target (an
// absolute `bin/python -> /usr/bin/python3`, a dangling link, a link to
// elsewhere in the workspace): only the task's own steps ever follow them,
// as on a PVC. Devices and unknown entry types are refused.
type extractor struct {
	mounts []*mount
	roots  []*os.Root
	asRoot bool
	// groups are the step's own groups (effective and supplementary) when it
	// is not root: owner.
	groups map[int]bool
	limits Limits
	// umask is the process's (files are created with it applied), -1 if
	// unknown
	umask int

	bytes   atomic.Int64
	entries atomic.Int64
	files   atomic.Int64

	mu   sync.Mutex
	dirs map[dirKey]dirMeta

	spillDir string // where data kept for hard links spills ("" = the system's temp dir)
}

type dirKey struct {
	m     int
	local string
}

type dirMeta struct {
	mode     int64
	mtime    time.Time
	uid, gid int
}

func newExtractor(mounts []*mount, limits Limits) (*extractor, error) {
	e := &extractor{asRoot: os.Geteuid() == 0, limits: limits, dirs: map[dirKey]dirMeta{}, umask: processUmask()}
	if !e.asRoot {
		e.groups = map[int]bool{os.Getegid(): true}
		if gs, err := os.Getgroups(); err == nil {
			for _, g := range gs {
				e.groups[g] = true
			}
		}
	}
	if e.limits.MaxBytes <= 0 {
		e.limits.MaxBytes = DefaultMaxBytes
	}
	if e.limits.MaxEntries <= 0 {
		e.limits.MaxEntries = DefaultMaxEntries
	}
	for _, m := range mounts {
		if m.covered {
			continue
		}
		r, err := os.OpenRoot(m.abs)
		if err != nil {
			e.close()
			return nil, err
		}
		e.mounts = append(e.mounts, m)
		e.roots = append(e.roots, r)
	}
	return e, nil
}

// processUmask reads the process's umask from /proc/self/status (Linux
// 4.7+; umask(2) cannot read it without setting it), -1 if it cannot.
func processUmask() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			if u, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil && u <= 0o777 {
				return int(u)
			}
		}
	}
	return -1
}

func (e *extractor) close() {
	for _, r := range e.roots {
		r.Close()
	}
}

// layerState is per layer (one goroutine).
type layerState struct {
	dirs []map[string]int // per mount: open descriptors of directories reached safely
	// files are the regular files of this layer so far (hard link targets):
	// where a name of each was written, or its data when no mount shows it
	files     map[string]*layerFile
	orphanMem int64 // bytes of orphans kept in memory
	// created is, by directory descriptor (of dirs), what a file created
	// there gets (extract_fs.go, newFile)
	created map[int]*newFile
}

type layerFile struct {
	placed []placement
	orphan *spool // the data of a file no mount shows, kept for its other names
}

type placement struct {
	m     int
	local string
}

func (lf *layerFile) in(m int) (string, bool) {
	for _, pl := range lf.placed {
		if pl.m == m {
			return pl.local, true
		}
	}
	return "", false
}

func (ls *layerState) close() {
	ls.closeDirs()
	for _, f := range ls.files {
		if f.orphan != nil {
			f.orphan.Close()
		}
	}
}

// entryFunc is told about every entry before it is written.
type entryFunc func(p string, typ byte) error

// extractTar extracts one layer's tar stream; title is the layer folder.
func (e *extractor) extractTar(r io.Reader, title string, onEntry entryFunc) error {
	if !validTitle(title) {
		return refuse(title, "layer title is not a plain folder name")
	}
	ls := &layerState{files: map[string]*layerFile{}}
	for range e.mounts {
		ls.dirs = append(ls.dirs, map[string]int{})
	}
	defer ls.close()
	return e.extractEntries(ls, r, title, onEntry)
}

func (e *extractor) extractEntries(ls *layerState, r io.Reader, title string, onEntry entryFunc) error {
	prefix := title + "/"
	tr := tar.NewReader(r)
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &corruptError{err}
		}
		if e.entries.Add(1) > e.limits.MaxEntries {
			return refuse(h.Name, "more than %d entries (--max-entries)", e.limits.MaxEntries)
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir && (name == prefix || name == title) {
			continue
		}
		if !strings.HasPrefix(name, prefix) {
			return refuse(name, "entry is outside the layer folder %q", title)
		}
		p := strings.TrimPrefix(name, prefix)
		if h.Typeflag == tar.TypeDir {
			p = strings.TrimSuffix(p, "/")
		}
		if err := checkRelPath(p); err != nil {
			return refuse(name, "%v", err)
		}
		var typ byte
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			typ = typeFile
			if h.Size < 0 || e.bytes.Add(h.Size) > e.limits.MaxBytes {
				return refuse(p, "total size over %d bytes (--max-bytes)", e.limits.MaxBytes)
			}
		case tar.TypeDir:
			typ = typeDir
		case tar.TypeSymlink:
			typ = typeSymlink
			if h.Linkname == "" || strings.ContainsRune(h.Linkname, 0) {
				return refuse(p, "symlink with an empty target or a NUL byte")
			}
		case tar.TypeLink:
			typ = typeFile
		case tar.TypeFifo:
			typ = typeFifo
		case tar.TypeChar, tar.TypeBlock:
			return refuse(p, "device file")
		default:
			return refuse(p, "unsupported tar entry type %q", h.Typeflag)
		}
		if onEntry != nil {
			if err := onEntry(p, typ); err != nil {
				return err
			}
		}
		if len(ls.dirs[0]) > maxCachedDirs {
			ls.closeDirs()
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			err = e.regular(ls, tr, h, p, *bufp)
		case tar.TypeLink:
			err = e.hardLink(ls, h, p, prefix, *bufp)
		default:
			err = e.eachMount(p, h.Typeflag == tar.TypeDir, func(mi int, local string) error {
				return e.special(ls, mi, h, p, local)
			})
		}
		if err != nil {
			return err
		}
	}
}

type corruptError struct{ err error }

func (c *corruptError) Error() string { return "corrupt archive: " + c.err.Error() }
func (c *corruptError) Unwrap() error { return c.err }

// eachMount calls fn for every mount that shows p. Only a directory may
// stand for a mount root, and for it fn is called with local "" (the
// directory the view is mounted on: its metadata is applied, nothing
// replaces it).
func (e *extractor) eachMount(p string, isDir bool, fn func(mi int, local string) error) error {
	for mi, m := range e.mounts {
		local, ok := m.local(p)
		if !ok {
			continue
		}
		if local == "" && !isDir {
			return refuse(p, "entry would replace the mount root %s", m.abs)
		}
		if err := fn(mi, local); err != nil {
			return err
		}
	}
	return nil
}

// special writes a directory, symlink or FIFO into one mount.
func (e *extractor) special(ls *layerState, mi int, h *tar.Header, p, local string) error {
	if h.Typeflag == tar.TypeDir {
		// The kubelet made the directory a subPath view is mounted on before
		// the pod started (mode 0777 on an emptyDir); on a PVC it is the
		// ancestors' directory, with their mode: give it theirs.
		if _, err := e.dirfd(ls, mi, p, local, local != ""); err != nil {
			return err
		}
		if h.PAXRecords[paxFillerKey] == "" {
			e.mu.Lock()
			e.dirs[dirKey{mi, local}] = dirMeta{mode: h.Mode, mtime: h.ModTime, uid: h.Uid, gid: h.Gid}
			e.mu.Unlock()
		}
		return nil
	}
	pfd, base, err := e.parentfd(ls, mi, p, local)
	if err != nil {
		return err
	}
	if err := e.removeAt(ls, mi, pfd, base, local); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink %s: %w", p, err)
		}
	case tar.TypeFifo:
		if err := unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0); err != nil {
			return fmt.Errorf("mkfifo %s: %w", p, err)
		}
		// a FIFO is never opened here (opening one blocks): its mode is
		// set by name, without following a link (there is none: just made).
		// The tar bits 04000/02000/01000 are S_ISUID/S_ISGID/S_ISVTX.
		if err := unix.Fchmodat(pfd, base, uint32(h.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	if uid, gid, ok := e.owner(h.Uid, h.Gid); ok {
		_ = unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	_ = unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

// owner is the owner to give an entry recorded as uid:gid (-1: leave it
// as created), and whether to change it at all. As root, the recorded one.
// Otherwise the step can only do what chown(2) lets a file's owner do, as a
// task's own step could have on the PVC: give it a group the step's user is
// in. That matters under fsGroup: a file the pull creates inside a setgid
// directory takes the directory's group, where on the PVC it had its
// writer's (a directory made with `mkdir -m 0755` had lost setgid first).
func (e *extractor) owner(uid, gid int) (int, int, bool) {
	if e.asRoot {
		return uid, gid, true
	}
	if e.groups[gid] {
		return -1, gid, true
	}
	return -1, -1, false
}

// smallFile is the size up to which a file is read into memory once and
// written from there to every mount that shows it.
const smallFile = 1 << 20

// orphanMemory is how much of the files no mount shows (kept for their
// other names) a layer keeps in memory before spilling to temporary files.
const orphanMemory = 8 << 20

// regular writes a regular file into every mount that shows it.
func (e *extractor) regular(ls *layerState, tr *tar.Reader, h *tar.Header, p string, buf []byte) error {
	lf := &layerFile{}
	ls.files[p] = lf
	var targets []placement
	if err := e.eachMount(p, false, func(mi int, local string) error {
		targets = append(targets, placement{mi, local})
		return nil
	}); err != nil {
		return err
	}
	if len(targets) == 0 {
		if h.PAXRecords[paxLinkedKey] == "" {
			return nil // the tar reader skips the data
		}
		// in memory while the layer's orphans fit in orphanMemory in all
		// (a layer of many small orphans held each one whole), then in
		// an unlinked file in the state directory
		mem := 0
		if ls.orphanMem+h.Size <= orphanMemory {
			mem = int(h.Size)
			ls.orphanMem += h.Size
		}
		lf.orphan = newSpool(mem, e.spillDir)
		if n, err := io.CopyBuffer(lf.orphan, tr, buf); err != nil || n != h.Size {
			return &corruptError{fmt.Errorf("%s: short file (%d of %d bytes): %v", p, n, h.Size, err)}
		}
		return nil
	}
	// A file that fits in the copy buffer is read once into it (no
	// allocation per file: issue 16), one up to smallFile into its own
	// slice, and written from there to every mount that shows it.
	var data []byte
	switch {
	case h.Size <= int64(len(buf)):
		data = buf[:h.Size]
	case h.Size <= smallFile:
		data = make([]byte, h.Size)
	}
	if data != nil {
		if _, err := io.ReadFull(tr, data); err != nil {
			return &corruptError{fmt.Errorf("%s: %w", p, err)}
		}
	}
	for i, t := range targets {
		var src io.Reader = tr
		if data == nil && i > 0 { // several mounts show it: copy what the first got
			f, err := e.openRegular(targets[0], p)
			if err != nil {
				return err
			}
			defer f.Close()
			src = f
		}
		pfd, base, err := e.parentfd(ls, t.m, p, t.local)
		if err != nil {
			return err
		}
		if err := e.writeFile(ls, pfd, base, e.roots[t.m], t.local, p, data, src, h, buf); err != nil {
			return err
		}
		lf.placed = append(lf.placed, t)
	}
	e.files.Add(1)
	return nil
}

// hardLink gives an earlier file of the same layer another name, in every
// mount that shows the name: a link where a name of the file is in the same
// file system, else the data (from another mount, or kept because no mount
// showed the file).
func (e *extractor) hardLink(ls *layerState, h *tar.Header, p, prefix string, buf []byte) error {
	target := strings.TrimPrefix(h.Linkname, prefix)
	lf := ls.files[target]
	if !strings.HasPrefix(h.Linkname, prefix) || checkRelPath(target) != nil || lf == nil {
		return refuse(p, "hard link to %q, which is not a file earlier in the archive", h.Linkname)
	}
	return e.eachMount(p, false, func(mi int, local string) error {
		pfd, base, err := e.parentfd(ls, mi, p, local)
		if err != nil {
			return err
		}
		if err := e.removeAt(ls, mi, pfd, base, local); err != nil {
			return err
		}
		if err := e.linkTo(ls, lf, mi, pfd, base, p); err == nil {
			lf.placed = append(lf.placed, placement{mi, local})
			return nil
		}
		var src io.Reader
		switch {
		case len(lf.placed) > 0:
			f, err := e.openRegular(lf.placed[0], p)
			if err != nil {
				return err
			}
			defer f.Close()
			src = f
		case lf.orphan != nil:
			src = lf.orphan.reader()
		default:
			return refuse(p, "hard link to %q, whose data no mount shows", h.Linkname)
		}
		fh := *h
		fh.Size = lf.size(e)
		if err := e.writeFile(ls, pfd, base, e.roots[mi], local, p, nil, src, &fh, buf); err != nil {
			return err
		}
		lf.placed = append(lf.placed, placement{mi, local})
		return nil
	})
}

// linkTo links the name (pfd, base) to a placed name of lf, in mount mi if
// it has one, else in another mount (views of one emptyDir share a file
// system).
func (e *extractor) linkTo(ls *layerState, lf *layerFile, mi, pfd int, base, p string) error {
	order := make([]placement, 0, len(lf.placed))
	if local, ok := lf.in(mi); ok {
		order = append(order, placement{mi, local})
	}
	order = append(order, lf.placed...)
	for _, pl := range order {
		ofd, obase, err := e.parentfd(ls, pl.m, p, pl.local)
		if err != nil {
			continue
		}
		if err := unix.Linkat(ofd, obase, pfd, base, 0); err == nil {
			return nil
		}
	}
	return fmt.Errorf("no name of the file to link to")
}

// openRegular opens a name the layer wrote, to copy its data. A later
// entry of a hostile archive may have put something else there: it must
// be a regular file (opened without blocking: a FIFO would wait forever).
func (e *extractor) openRegular(pl placement, p string) (*os.File, error) {
	f, err := e.roots[pl.m].OpenFile(pl.local, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, refuse(p, "hard link to a name that is no longer a regular file")
	}
	return f, nil
}

// size is the data size of a file of the layer.
func (lf *layerFile) size(e *extractor) int64 {
	if lf.orphan != nil {
		return lf.orphan.n
	}
	if len(lf.placed) > 0 {
		if fi, err := e.roots[lf.placed[0].m].Lstat(lf.placed[0].local); err == nil {
			return fi.Size()
		}
	}
	return 0
}

func (ls *layerState) closeDirs() {
	for i, m := range ls.dirs {
		for _, fd := range m {
			unix.Close(fd)
		}
		ls.dirs[i] = map[string]int{}
	}
	clear(ls.created)
}

// maxCachedDirs bounds the directory descriptors a layer keeps open.
const maxCachedDirs = 512
