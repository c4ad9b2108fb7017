package transport

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
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
	verified []map[string]bool // per mount: directories known to be real
	regs     map[string]bool   // regular files of this layer (hard link targets)
	pool     *filePool
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
	ls := &layerState{regs: map[string]bool{}, pool: newFilePool(8)}
	for range e.mounts {
		ls.verified = append(ls.verified, map[string]bool{})
	}
	err := e.extractEntries(ls, r, title, onEntry)
	if werr := ls.pool.wait(); err == nil {
		err = werr
	}
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
		if err := e.parents(ls, mi, p, local); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			fi, err := root.Lstat(local)
			if err == nil && !fi.IsDir() {
				if err := root.RemoveAll(local); err != nil {
					return err
				}
				err = fs.ErrNotExist
			}
			if err != nil {
				if err := root.Mkdir(local, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("mkdir %s: %w", p, err)
				}
			}
			ls.verified[mi][local] = true
			if h.ModTime.UnixNano() != 0 { // epoch: a synthesized ancestor with no metadata
				e.mu.Lock()
				e.dirs[dirKey{mi, local}] = dirMeta{mode: h.Mode, mtime: h.ModTime, uid: h.Uid, gid: h.Gid}
				e.mu.Unlock()
			}
		case tar.TypeSymlink:
			if err := checkLinkTarget(p, h.Linkname, []*mount{m}); err != nil {
				return err
			}
			if err := removeExisting(root, local); err != nil {
				return err
			}
			delete(ls.verified[mi], local)
			if err := root.Symlink(h.Linkname, local); err != nil {
				return fmt.Errorf("symlink %s: %w", p, err)
			}
			if e.asRoot {
				_ = root.Lchown(local, h.Uid, h.Gid)
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
			if err := removeExisting(root, local); err != nil {
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
			if err := e.writeFile(root, local, p, src, h, buf); err != nil {
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
		if err := e.parents(ls, mi, p, local); err != nil {
			return err
		}
		targets = append(targets, target{e.roots[mi], local})
	}
	ls.regs[p] = true
	if len(targets) == 0 {
		return nil
	}
	e.files.Add(1)
	hdr := *h
	ls.pool.do(func() error {
		for _, t := range targets {
			if err := e.writeFile(t.root, t.local, p, bytes.NewReader(data), &hdr, nil); err != nil {
				return err
			}
		}
		return nil
	})
	return nil
}

func mustLocal(m *mount, p string) string { l, _ := m.local(p); return l }

func removeExisting(root *os.Root, local string) error {
	if _, err := root.Lstat(local); err == nil {
		if err := root.RemoveAll(local); err != nil {
			return err
		}
	}
	return nil
}

// parents makes sure every ancestor of local inside the mount is a real
// directory, creating missing ones, and refuses to pass through a symlink.
func (e *extractor) parents(ls *layerState, mi int, p, local string) error {
	root := e.roots[mi]
	v := ls.verified[mi]
	for i := 0; i < len(local); i++ {
		if local[i] != '/' {
			continue
		}
		d := local[:i]
		if v[d] {
			continue
		}
		fi, err := root.Lstat(d)
		switch {
		case err == nil && fi.IsDir():
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			return refuse(p, "path passes through the symlink %s", d)
		case err == nil:
			// a file where a directory is needed: the later delta wins
			if err := root.Remove(d); err != nil {
				return err
			}
			fallthrough
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("mkdir %s: %w", d, err)
			}
		default:
			return err
		}
		v[d] = true
	}
	return nil
}

func (e *extractor) writeFile(root *os.Root, local, p string, src io.Reader, h *tar.Header, buf []byte) error {
	f, err := root.OpenFile(local, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		if err := root.RemoveAll(local); err != nil {
			return fmt.Errorf("replace %s: %w", p, err)
		}
		f, err = root.OpenFile(local, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	var n int64
	if br, ok := src.(*bytes.Reader); ok {
		n, err = br.WriteTo(f)
	} else {
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
	return root.Chtimes(local, h.ModTime, h.ModTime)
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
