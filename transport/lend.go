package transport

import (
	"errors"
	"log/slog"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// A task's steps may leave entries their own user cannot read: a file of
// mode 000 or 0200 (permission-error fixtures, a write-only log), a
// directory of mode 000 or 0300 (a dropbox). On a PVC nobody has to read
// them; converted, the push has to, and a push that runs as that user
// (non-root, no CAP_DAC_OVERRIDE) failed with "permission denied" where the
// PVC run succeeded (outside case non-root-unreadable-own-files). The owner
// of a file may always change its mode, so the push lends itself the
// owner's read (and, for a directory, search) permission on the entries it
// owns, reads them, and gives the modes back: a file's at once, a
// directory's when the push ends, since its files are read after the scan
// (in reverse order, so a directory is closed again after what is inside).
// The delta records the modes as the task left them. Entries of other users
// stay unreadable to a non-root push (docs/design.md, "Known differences").

// lentDir is a directory whose mode the push widened.
type lentDir struct {
	path string
	mode uint32 // as the task left it (permission bits, unix encoding)
}

// lendable reports whether the push may widen an entry's mode: it owns it
// and is not root (root reads everything already).
func lendable(uid uint32) bool {
	euid := os.Geteuid()
	return euid != 0 && uint32(euid) == uid
}

// openDirLent opens the directory name below fd as openat does; when that
// is refused and the push owns it, it adds u+rx, opens it and remembers the
// mode to give back (s.restoreDirs).
func (s *scanned) openDirLent(fd int, name, full string, r *record) (int, error) {
	cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if !errors.Is(err, unix.EACCES) || !lendable(r.uid) {
		return cfd, err
	}
	if cerr := unix.Fchmodat(fd, name, r.mode|0o500, 0); cerr != nil {
		return cfd, err
	}
	s.mu.Lock()
	s.lent = append(s.lent, lentDir{path: full, mode: r.mode})
	s.mu.Unlock()
	return unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// restoreDirs gives the lent directories their modes back, innermost first.
func (s *scanned) restoreDirs(log *slog.Logger) {
	s.mu.Lock()
	lent := slices.Clone(s.lent)
	s.lent = nil
	s.mu.Unlock()
	// a directory is lent before anything below it (the walk opens parents
	// first), and the walk runs in parallel: deepest paths first
	slices.SortFunc(lent, func(a, b lentDir) int { return len(b.path) - len(a.path) })
	for _, d := range lent {
		if err := unix.Chmod(d.path, d.mode); err != nil {
			log.Warn("push: could not give a directory its mode back", "path", d.path, "mode", d.mode, "err", err)
		}
	}
	if len(lent) > 0 {
		log.Info("push: read directories of this task's user that it could not read (mode lent and given back)", "count", len(lent))
	}
}

// openFileLent opens a file for its data; when that is refused and the push
// owns it, it adds u+r for the open and gives the mode back at once (the
// descriptor stays readable).
func openFileLent(name string, r *record) (*os.File, error) {
	f, err := openLong(name)
	if !errors.Is(err, unix.EACCES) || !lendable(r.uid) {
		return f, err
	}
	if cerr := unix.Chmod(name, r.mode|0o400); cerr != nil {
		return f, err
	}
	f, err = openLong(name)
	if cerr := unix.Chmod(name, r.mode); cerr != nil && err == nil {
		f.Close()
		return nil, cerr
	}
	return f, err
}
