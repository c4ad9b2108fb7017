package transport

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
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
// a mount: every filesystem call goes through an os.Root, and entries that
// would pass through a symlink, escape with a symlink, or are devices,
// FIFOs or dangling hard links are refused.
type extractor struct {
	mounts []*mount
	roots  []*os.Root
	asRoot bool
	limits Limits

	bytes   atomic.Int64
	entries atomic.Int64
	files   atomic.Int64

	mu    sync.Mutex
	dirs  map[dirKey]dirMeta
	links []dirKey // symlinks whose target has "..": re-checked at the end
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
	e := &extractor{asRoot: os.Geteuid() == 0, limits: limits, dirs: map[dirKey]dirMeta{}}
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

func (e *extractor) close() {
	for _, r := range e.roots {
		r.Close()
	}
}

// layerState is per layer (one goroutine).
type layerState struct {
	dirs []map[string]int // per mount: open descriptors of directories reached safely
	regs map[string]bool  // regular files of this layer (hard link targets)
	pool *filePool
}

// filePool writes small files on several goroutines: creating a file is
// the dominant cost of many small files, and it is kernel time that
// parallelises.
type filePool struct {
	sem chan struct{}
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

const smallFile = 1 << 20

func newFilePool(n int) *filePool { return &filePool{sem: make(chan struct{}, n)} }

func (fp *filePool) do(fn func() error) {
	fp.sem <- struct{}{}
	fp.wg.Add(1)
	go func() {
		defer fp.wg.Done()
		defer func() { <-fp.sem }()
		if err := fn(); err != nil {
			fp.mu.Lock()
			if fp.err == nil {
				fp.err = err
			}
			fp.mu.Unlock()
		}
	}()
}

func (fp *filePool) wait() error {
	fp.wg.Wait()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.err
}

func (fp *filePool) failed() error {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.err
}

// entryFunc is told about every entry before it is written.
type entryFunc func(p string, typ byte) error

// extractTar extracts one layer's tar stream; title is the layer folder.
func (e *extractor) extractTar(r io.Reader, title string, onEntry entryFunc) error {
	if !validTitle(title) {
		return refuse(title, "layer title is not a plain folder name")
	}
	ls := &layerState{regs: map[string]bool{}, pool: newFilePool(poolSize)}
	for range e.mounts {
		ls.dirs = append(ls.dirs, map[string]int{})
	}
	err := e.extractEntries(ls, r, title, onEntry)
	if werr := ls.pool.wait(); err == nil {
		err = werr
	}
	ls.closeDirs()
	return err
}

func (e *extractor) extractEntries(ls *layerState, r io.Reader, title string, onEntry entryFunc) error {
	prefix := title + "/"
	tr := tar.NewReader(r)
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	for {
		if err := ls.pool.failed(); err != nil {
			return err
		}
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
		case tar.TypeLink:
			typ = typeFile
		case tar.TypeChar, tar.TypeBlock:
			return refuse(p, "device file")
		case tar.TypeFifo:
			return refuse(p, "FIFO")
		default:
			return refuse(p, "unsupported tar entry type %q", h.Typeflag)
		}
		if onEntry != nil {
			if err := onEntry(p, typ); err != nil {
				return err
			}
		}
		if err := e.entry(ls, tr, h, p, prefix, *bufp); err != nil {
			return err
		}
	}
}

type corruptError struct{ err error }

func (c *corruptError) Error() string { return "corrupt archive: " + c.err.Error() }
func (c *corruptError) Unwrap() error { return c.err }

func (e *extractor) entry(ls *layerState, tr *tar.Reader, h *tar.Header, p, prefix string, buf []byte) error {
	if len(ls.dirs[0]) > maxCachedDirs {
		if err := ls.pool.wait(); err != nil {
			return err
		}
		ls.closeDirs()
	}
	if (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) && h.Size <= smallFile {
		return e.smallFile(ls, tr, h, p)
	}
	first := -1 // mount that received the file's data
	for mi, m := range e.mounts {
		local, ok := m.local(p)
		if !ok {
			continue
		}
		root := e.roots[mi]
		if local == "" {
			if h.Typeflag != tar.TypeDir {
				return refuse(p, "entry would replace the mount root %s", m.abs)
			}
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if _, err := e.dirfd(ls, mi, p, local, true); err != nil {
				return err
			}
			if h.ModTime.UnixNano() != 0 { // epoch: a synthesized ancestor with no metadata
				e.mu.Lock()
				e.dirs[dirKey{mi, local}] = dirMeta{mode: h.Mode, mtime: h.ModTime, uid: h.Uid, gid: h.Gid}
				e.mu.Unlock()
			}
		case tar.TypeSymlink:
			if err := checkLinkTarget(p, h.Linkname, []*mount{m}); err != nil {
				return err
			}
			pfd, base, err := e.parentfd(ls, mi, p, local)
			if err != nil {
				return err
			}
			if err := e.removeAt(ls, mi, pfd, base, local); err != nil {
				return err
			}
			if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
				return fmt.Errorf("symlink %s: %w", p, err)
			}
			if e.asRoot {
				_ = unix.Fchownat(pfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW)
			}
			if strings.Contains(h.Linkname, "..") {
				e.mu.Lock()
				e.links = append(e.links, dirKey{mi, local})
				e.mu.Unlock()
			}
		case tar.TypeLink:
			if err := ls.pool.wait(); err != nil {
				return err
			}
			target := strings.TrimPrefix(h.Linkname, prefix)
			if !strings.HasPrefix(h.Linkname, prefix) || checkRelPath(target) != nil || !ls.regs[target] {
				return refuse(p, "hard link to %q, which is not a file earlier in the archive", h.Linkname)
			}
			tl, ok := m.local(target)
			if !ok || tl == "" {
				return refuse(p, "hard link to %q, which is outside the mount", h.Linkname)
			}
			pfd, base, err := e.parentfd(ls, mi, p, local)
			if err != nil {
				return err
			}
			if err := e.removeAt(ls, mi, pfd, base, local); err != nil {
				return err
			}
			if err := root.Link(tl, local); err != nil {
				return fmt.Errorf("link %s: %w", p, err)
			}
		default: // regular file
			var src io.Reader = tr
			if first >= 0 {
				f, err := e.roots[first].Open(mustLocal(e.mounts[first], p))
				if err != nil {
					return err
				}
				defer f.Close()
				src = f
			}
			pfd, base, err := e.parentfd(ls, mi, p, local)
			if err != nil {
				return err
			}
			if err := e.writeFile(pfd, base, root, local, p, src, h, buf); err != nil {
				return err
			}
			if first < 0 {
				first = mi
				e.files.Add(1)
			}
		}
	}
	if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA {
		ls.regs[p] = true
	}
	return nil
}

// smallFile reads a small file into memory and writes it to every mount on
// the layer's pool.
func (e *extractor) smallFile(ls *layerState, tr *tar.Reader, h *tar.Header, p string) error {
	data := make([]byte, h.Size)
	if _, err := io.ReadFull(tr, data); err != nil {
		return &corruptError{fmt.Errorf("%s: %w", p, err)}
	}
	type target struct {
		pfd   int
		base  string
		root  *os.Root
		local string
	}
	var targets []target
	for mi, m := range e.mounts {
		local, ok := m.local(p)
		if !ok {
			continue
		}
		if local == "" {
			return refuse(p, "entry would replace the mount root %s", m.abs)
		}
		pfd, base, err := e.parentfd(ls, mi, p, local)
		if err != nil {
			return err
		}
		targets = append(targets, target{pfd, base, e.roots[mi], local})
	}
	ls.regs[p] = true
	if len(targets) == 0 {
		return nil
	}
	e.files.Add(1)
	hdr := *h
	write := func() error {
		for _, t := range targets {
			if err := e.writeFile(t.pfd, t.base, t.root, t.local, p, bytes.NewReader(data), &hdr, nil); err != nil {
				return err
			}
		}
		return nil
	}
	if cap(ls.pool.sem) <= 1 {
		return write()
	}
	ls.pool.do(write)
	return nil
}

func mustLocal(m *mount, p string) string { l, _ := m.local(p); return l }

// maxCachedDirs bounds the directory descriptors a layer keeps open.
const maxCachedDirs = 512

func (ls *layerState) closeDirs() {
	for i, m := range ls.dirs {
		for _, fd := range m {
			unix.Close(fd)
		}
		ls.dirs[i] = map[string]int{}
	}
}

func splitLocal(local string) (dir, base string) {
	if i := strings.LastIndexByte(local, '/'); i >= 0 {
		return local[:i], local[i+1:]
	}
	return "", local
}

// parentfd returns an open descriptor of the directory that holds local,
// creating missing directories.
func (e *extractor) parentfd(ls *layerState, mi int, p, local string) (int, string, error) {
	dir, base := splitLocal(local)
	fd, err := e.dirfd(ls, mi, p, dir, false)
	return fd, base, err
}

// dirfd opens (creating it if needed) the directory local of mount mi, one
// component at a time with O_NOFOLLOW from the mount root, so that nothing
// is ever reached through a symlink. An ancestor that is a symlink is
// refused; a non-directory in the way is replaced (the later delta wins);
// with replace, the final component is replaced even if it is a symlink.
func (e *extractor) dirfd(ls *layerState, mi int, p, local string, replace bool) (int, error) {
	cache := ls.dirs[mi]
	if fd, ok := cache[local]; ok {
		return fd, nil
	}
	if local == "" {
		fd, err := unix.Open(e.mounts[mi].abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open mount %s: %w", e.mounts[mi].abs, err)
		}
		cache[local] = fd
		return fd, nil
	}
	parent, base := splitLocal(local)
	pfd, err := e.dirfd(ls, mi, p, parent, false)
	if err != nil {
		return -1, err
	}
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			cache[local] = fd
			return fd, nil
		}
		if attempt > 2 {
			return -1, fmt.Errorf("open directory %s: %w", local, err)
		}
		switch err {
		case unix.ENOENT:
			if err := unix.Mkdirat(pfd, base, 0o755); err != nil && err != unix.EEXIST {
				return -1, fmt.Errorf("mkdir %s: %w", local, err)
			}
		case unix.ELOOP, unix.ENOTDIR:
			var st unix.Stat_t
			if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return -1, err
			}
			if st.Mode&unix.S_IFMT == unix.S_IFLNK && !replace {
				return -1, refuse(p, "path passes through the symlink %s", local)
			}
			if err := unix.Unlinkat(pfd, base, 0); err != nil && err != unix.ENOENT {
				return -1, fmt.Errorf("replace %s: %w", local, err)
			}
		default:
			return -1, fmt.Errorf("open directory %s: %w", local, err)
		}
	}
}

// removeAt removes whatever is at base in pfd (recursively for a directory).
func (e *extractor) removeAt(ls *layerState, mi, pfd int, base, local string) error {
	err := unix.Unlinkat(pfd, base, 0)
	switch err {
	case nil, unix.ENOENT:
		return nil
	case unix.EISDIR, unix.EPERM:
		if _, ok := ls.dirs[mi][local]; ok {
			// a directory this layer opened is replaced: let pending
			// writes finish before its descriptors go
			if err := ls.pool.wait(); err != nil {
				return err
			}
			for d, fd := range ls.dirs[mi] {
				if under(d, local) {
					unix.Close(fd)
					delete(ls.dirs[mi], d)
				}
			}
		}
		return e.roots[mi].RemoveAll(local)
	}
	return fmt.Errorf("remove %s: %w", local, err)
}

func (e *extractor) writeFile(pfd int, base string, root *os.Root, local, p string, src io.Reader, h *tar.Header, buf []byte) error {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0o600)
	if err == unix.EEXIST {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			if err != unix.EISDIR && err != unix.EPERM {
				return fmt.Errorf("replace %s: %w", p, err)
			}
			if err := root.RemoveAll(local); err != nil {
				return fmt.Errorf("replace %s: %w", p, err)
			}
		}
		fd, err = unix.Openat(pfd, base, flags, 0o600)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var n int64
	if br, ok := src.(*bytes.Reader); ok {
		n, err = br.WriteTo(f)
	} else {
		if buf == nil {
			buf = make([]byte, 32<<10)
		}
		n, err = io.CopyBuffer(f, io.LimitReader(src, h.Size), buf)
	}
	if err == nil && n != h.Size {
		err = &corruptError{fmt.Errorf("%s: short file (%d of %d bytes)", p, n, h.Size)}
	}
	if err == nil && e.asRoot {
		err = f.Chown(h.Uid, h.Gid)
	}
	if err == nil {
		err = f.Chmod(fileMode(h.Mode))
	}
	if err == nil {
		err = futimens(int(f.Fd()), h.ModTime)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var ce *corruptError
		if errors.As(err, &ce) || isReadErr(err) {
			return err
		}
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// futimens sets a file's access and modification times through its
// descriptor (utimensat with a NULL path), with nanosecond precision.
func futimens(fd int, t time.Time) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return &fs.PathError{Op: "futimens", Path: "", Err: errno}
	}
	return nil
}

func isReadErr(err error) bool {
	var pe *fs.PathError
	return !errors.As(err, &pe) && !errors.Is(err, syscall.ENOSPC)
}

// finish applies directory modes, owners and times (deepest first, after
// all files are in place) and re-checks symlinks whose target climbs.
func (e *extractor) finish() error {
	keys := make([]dirKey, 0, len(e.dirs))
	for k := range e.dirs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		di, dj := strings.Count(keys[i].local, "/"), strings.Count(keys[j].local, "/")
		if di != dj {
			return di > dj
		}
		return keys[i].local < keys[j].local
	})
	for _, k := range keys {
		meta := e.dirs[k]
		root := e.roots[k.m]
		fi, err := root.Lstat(k.local)
		if err != nil || !fi.IsDir() {
			continue
		}
		if e.asRoot {
			if err := root.Lchown(k.local, meta.uid, meta.gid); err != nil {
				return err
			}
		}
		if err := root.Chmod(k.local, fileMode(meta.mode)); err != nil {
			return err
		}
		if err := root.Chtimes(k.local, meta.mtime, meta.mtime); err != nil {
			return err
		}
	}
	for _, k := range e.links {
		if err := resolveInMount(e.roots[k.m], k.local); err != nil {
			_ = e.roots[k.m].Remove(k.local)
			return err
		}
	}
	return nil
}

// checkLinkTarget refuses symlink targets that are absolute or climb out of
// the workspace root or out of a mount the link lands in.
func checkLinkTarget(p, target string, mounts []*mount) error {
	switch {
	case target == "":
		return refuse(p, "symlink with an empty target")
	case strings.ContainsRune(target, 0):
		return refuse(p, "symlink target has a NUL byte")
	case path.IsAbs(target):
		return refuse(p, "symlink target %q is absolute (it would leave the mount)", target)
	}
	if escapes(path.Join(path.Dir(p), target)) {
		return refuse(p, "symlink target %q escapes the workspace", target)
	}
	for _, m := range mounts {
		local, ok := m.local(p)
		if !ok || local == "" {
			continue
		}
		if escapes(path.Join(path.Dir(local), target)) {
			return refuse(p, "symlink target %q escapes the mount %s", target, m.Dir)
		}
	}
	return nil
}

func escapes(clean string) bool { return clean == ".." || strings.HasPrefix(clean, "../") }

// resolveInMount follows the symlink at local the way the kernel would,
// staying inside the mount, and refuses it if it leaves the mount.
func resolveInMount(root *os.Root, local string) error {
	todo := strings.Split(local, "/")
	var cur []string
	hops := 0
	exists := true
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return refuse(local, "symlink resolves outside the mount")
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cand := strings.Join(append(cur[:len(cur):len(cur)], c), "/")
		if exists {
			fi, err := root.Lstat(cand)
			if err != nil {
				exists = false
			} else if fi.Mode()&fs.ModeSymlink != 0 {
				hops++
				if hops > 40 {
					return refuse(local, "too many levels of symlinks")
				}
				t, err := root.Readlink(cand)
				if err != nil {
					return err
				}
				if path.IsAbs(t) {
					return refuse(local, "symlink resolves to an absolute path")
				}
				todo = append(strings.Split(t, "/"), todo...)
				continue
			}
		}
		cur = append(cur, c)
	}
	return nil
}

var poolSize = 1
