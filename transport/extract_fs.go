package transport

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The file-system side of the extractor: directories reached through
// descriptors, files created without following anything.

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
// is ever reached through a symlink and no path is longer than one name. An
// ancestor that is a symlink is refused; a non-directory in the way is
// replaced (the later delta wins); with replace, the final component is
// replaced even if it is a symlink.
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
		for d, fd := range ls.dirs[mi] {
			if under(d, local) {
				unix.Close(fd)
				delete(ls.dirs[mi], d)
				delete(ls.created, fd)
			}
		}
		return e.roots[mi].RemoveAll(local)
	}
	return fmt.Errorf("remove %s: %w", local, err)
}

// newFile is what a file created in a directory gets before any fchown or
// fchmod: learnt (fstat) from the first file a layer creates there, so that
// the next ones skip an fchown or fchmod that would change nothing (issue
// 15: as many syscalls per file as tar -x less up to two). ok is false when
// they may not: the directory has a default ACL (the mode a file is
// created with is then not the one asked less the umask), the umask is
// unknown, or the first file did not come out as expected.
type newFile struct {
	uid, gid uint32
	ok       bool
}

// newFileIn returns what is known of files created in the directory pfd
// (nil: create the next one and learn).
func (ls *layerState) newFileIn(pfd int) *newFile {
	return ls.created[pfd]
}

// learn records what the file fd, just created in pfd with mode asked,
// came out as.
func (e *extractor) learn(ls *layerState, pfd, fd int, asked uint32) *newFile {
	nf := &newFile{}
	var st unix.Stat_t
	if e.umask >= 0 && unix.Fstat(fd, &st) == nil && st.Mode&0o7777 == asked&^uint32(e.umask) {
		nf.uid, nf.gid = st.Uid, st.Gid
		_, err := unix.Fgetxattr(pfd, "system.posix_acl_default", nil)
		nf.ok = err == unix.ENODATA || err == unix.EOPNOTSUPP
	}
	if ls.created == nil {
		ls.created = map[int]*newFile{}
	}
	ls.created[pfd] = nf
	return nf
}

// writeFile creates the file base in pfd and writes data, or h.Size bytes
// of src through buf, then its owner, mode and times, on the raw
// descriptor (no os.File per file: issue 15).
func (e *extractor) writeFile(ls *layerState, pfd int, base string, root *os.Root, local, p string, data []byte, src io.Reader, h *tar.Header, buf []byte) error {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// Created with its permission bits where the umask leaves them all
	// (and no setuid, setgid, sticky: fchmod after fchown for those), else
	// 0600 until the fchmod.
	mode := uint32(h.Mode & 0o7777) // the tar bits 04000/02000/01000 are S_ISUID/S_ISGID/S_ISVTX
	asked := uint32(0o600)
	if e.umask >= 0 && mode&^0o777 == 0 && mode&uint32(e.umask) == 0 {
		asked = mode
	}
	fd, err := unix.Openat(pfd, base, flags, asked)
	if err == unix.EEXIST {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			if err != unix.EISDIR && err != unix.EPERM {
				return fmt.Errorf("replace %s: %w", p, err)
			}
			if err := root.RemoveAll(local); err != nil {
				return fmt.Errorf("replace %s: %w", p, err)
			}
		}
		fd, err = unix.Openat(pfd, base, flags, asked)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	nf := ls.newFileIn(pfd)
	if nf == nil {
		nf = e.learn(ls, pfd, fd, asked)
	}
	werr := func(op string, err error) error {
		return fmt.Errorf("write %s: %w", p, &fs.PathError{Op: op, Path: p, Err: err})
	}
	var n int64
	if data != nil || h.Size == 0 {
		if err = writeAll(fd, data); err != nil {
			err = werr("write", err)
		}
		n = int64(len(data))
	} else {
		if buf == nil {
			buf = make([]byte, 32<<10)
		}
		for n < h.Size && err == nil {
			m, rerr := src.Read(buf[:min(int64(len(buf)), h.Size-n)])
			if m > 0 {
				if err = writeAll(fd, buf[:m]); err != nil {
					err = werr("write", err)
				}
				n += int64(m)
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil && err == nil {
				err = rerr // a read error (network, archive) goes up as it is
			}
		}
	}
	if err == nil && n != h.Size {
		err = &corruptError{fmt.Errorf("%s: short file (%d of %d bytes)", p, n, h.Size)}
	}
	if uid, gid, ok := e.owner(h.Uid, h.Gid); err == nil && ok &&
		!(nf.ok && (uid < 0 || uint32(uid) == nf.uid) && uint32(gid) == nf.gid) {
		if cerr := unix.Fchown(fd, uid, gid); e.asRoot && cerr != nil {
			err = werr("chown", cerr)
		}
	}
	if err == nil && !(nf.ok && asked == mode) {
		if cerr := unix.Fchmod(fd, mode); cerr != nil {
			err = werr("chmod", cerr)
		}
	}
	if err == nil {
		if cerr := futimens(fd, h.ModTime); cerr != nil {
			err = fmt.Errorf("write %s: %w", p, cerr)
		}
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = werr("close", cerr)
	}
	return err
}

// writeAll writes b to fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
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

// finish applies directory modes, owners and times, deepest first, after
// all files are in place (a 0555 directory must be filled before it is
// made read-only, and writing into a directory changes its mtime).
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
		name := k.local
		if name == "" {
			name = "." // the mount root
		}
		fi, err := root.Lstat(name)
		if err != nil || !fi.IsDir() {
			continue
		}
		if err := e.applyDirMeta(root, name, meta); err != nil {
			// A mount root belongs to the kubelet: a non-root step may not
			// change it. Every directory below it the pull made itself.
			if k.local == "" && errors.Is(err, fs.ErrPermission) {
				continue
			}
			return err
		}
	}
	return nil
}

func (e *extractor) applyDirMeta(root *os.Root, name string, meta dirMeta) error {
	if uid, gid, ok := e.owner(meta.uid, meta.gid); ok {
		// before the chmod: chown(2) clears setgid
		if err := root.Lchown(name, uid, gid); err != nil && (e.asRoot || name == ".") {
			return err
		}
	}
	if err := root.Chmod(name, fileMode(meta.mode)); err != nil {
		return err
	}
	return root.Chtimes(name, meta.mtime, meta.mtime)
}
