package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Entry types.
const (
	typeFile    = 'f'
	typeDir     = 'd'
	typeSymlink = 'l'
	typeFifo    = 'p'
)

// record is what the baseline keeps of one path, and what push compares.
//
// A push of a big tree holds one per path, so it is kept small (80 bytes
// plus its path): the local file to read is not stored but derived from the
// mount the record came from (mnt, see srcRoot), what only files with
// several names need is apart (hl), and the small fields share words.
type record struct {
	path  string // relative to the pipeline workspace root, slash-separated
	typ   byte
	seen  bool   // diff: still present
	mnt   uint16 // push: index of the mount scanned (scanMounts), for src
	mode  uint32 // permission and setuid/setgid/sticky bits (tar encoding)
	uid   uint32
	gid   uint32
	size  int64
	mtime int64 // ns
	ctime int64 // ns; catches rewrites that keep size and mtime
	link  string
	hl    *hardLink // files with several names (nlink > 1) only
}

// hardLink is what a push needs of a file with several names (not
// persisted): those that share dev and ino are one file.
type hardLink struct {
	dev, ino uint64
	linkTo   string // push: an earlier name of the same file in this delta
}

// linkTo is the earlier name of the same file in this delta, if any.
func (r *record) linkTo() string {
	if r.hl == nil {
		return ""
	}
	return r.hl.linkTo
}

// srcRoot is a scanned mount as the records name it: a record of the mount
// has path view + "/" + rel (or rel for the root view) and is the local
// file dir + "/" + rel.
type srcRoot struct{ dir, view string }

// src is the local file of r, a record scanned from root.
func (root srcRoot) src(r *record) string {
	if root.view == "" {
		return root.dir + "/" + r.path
	}
	return root.dir + r.path[len(root.view):]
}

func (r *record) same(o *record) bool {
	return r.typ == o.typ && r.mode == o.mode && r.uid == o.uid && r.gid == o.gid &&
		r.size == o.size && r.mtime == o.mtime && r.ctime == o.ctime && r.link == o.link
}

// tarMode converts a stat mode to the tar permission encoding.
func tarMode(m uint32) uint32 {
	out := m & 0o777
	if m&unix.S_ISUID != 0 {
		out |= 0o4000
	}
	if m&unix.S_ISGID != 0 {
		out |= 0o2000
	}
	if m&unix.S_ISVTX != 0 {
		out |= 0o1000
	}
	return out
}

func fileMode(tm int64) fs.FileMode {
	m := fs.FileMode(tm & 0o777)
	if tm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if tm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if tm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// scanned is what a scan skipped: entries a workspace may hold that are not
// stored (sockets: a socket is dead once its process exits).
type scanned struct {
	mu          sync.Mutex
	sockets     int
	firstSocket string
	lent        []lentDir // directories the push widened to read (lend.go)
}

func (s *scanned) socket(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sockets == 0 {
		s.firstSocket = p
	}
	s.sockets++
}

// scanMount walks a mount and returns its records in walk order (parents
// before children, names sorted), with paths prefixed by the view. The
// mount root itself is included when the view is not the workspace root.
// Directories are read in parallel, each through a descriptor opened from
// its parent's (openat), so no path is ever longer than one name: trees
// deeper than PATH_MAX scan like any other. forPush refuses what a delta
// cannot hold (devices); otherwise such entries are left out. Every record
// gets mnt, the mount's index for srcRoot.
func scanMount(dir, view string, mnt uint16, forPush bool, sk *scanned) ([]record, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	w := &walker{forPush: forPush, skipped: sk, sem: make(chan struct{}, 8), mnt: mnt}
	lead := 0
	if view != "" {
		lead = 1
	}
	// the mount root takes the first slot the walk leaves: no copy of the
	// whole list to put it in front
	out, err := w.walk(fd, dir, view, lead)
	if err != nil {
		return nil, err
	}
	if view != "" {
		out[0] = record{path: view, typ: typeDir, mnt: mnt, mode: tarMode(st.Mode), uid: st.Uid, gid: st.Gid,
			mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
	}
	return out, nil
}

type walker struct {
	forPush bool
	skipped *scanned
	sem     chan struct{}
	mnt     uint16
}

// walk returns the records below the open directory fd, which it closes,
// after lead empty records for the caller to fill. Every slice is made at
// its final size: a big tree's records are copied once into their parent's
// list, never into a growing one.
func (w *walker) walk(fd int, dir, rel string, lead int) ([]record, error) {
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	sort.Strings(names)
	recs := make([]record, lead, lead+len(names))
	type sub struct {
		idx  int
		recs []record
		err  error
		wg   sync.WaitGroup
	}
	var subs []*sub
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("stat %s: %w", filepath.Join(dir, name), err)
		}
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		full := dir + "/" + name
		r, keep, err := w.statRecordAt(fd, name, full, p, &st)
		if err != nil {
			return nil, err
		}
		if !keep {
			continue
		}
		recs = append(recs, r)
		if r.typ != typeDir {
			continue
		}
		var cfd int
		if w.forPush {
			cfd, err = w.skipped.openDirLent(fd, name, full, &recs[len(recs)-1])
		} else {
			cfd, err = unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", full, err)
		}
		s := &sub{idx: len(recs)}
		subs = append(subs, s)
		s.wg.Add(1)
		select {
		case w.sem <- struct{}{}:
			go func() {
				defer s.wg.Done()
				s.recs, s.err = w.walk(cfd, full, p, 0)
				<-w.sem
			}()
		default:
			s.recs, s.err = w.walk(cfd, full, p, 0)
			s.wg.Done()
		}
	}
	if len(subs) == 0 {
		return recs, nil
	}
	total := len(recs)
	var firstErr error
	for _, s := range subs {
		s.wg.Wait() // every child closes its descriptor, error or not
		if s.err != nil && firstErr == nil {
			firstErr = s.err
		}
		total += len(s.recs)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	out := make([]record, lead, total)
	prev := lead
	for _, s := range subs {
		out = append(out, recs[prev:s.idx]...)
		out = append(out, s.recs...)
		s.recs = nil // each child's list can go as soon as it is copied
		prev = s.idx
	}
	return append(out, recs[prev:]...), nil
}

// statRecordAt makes the record of name in directory dfd; keep is false for
// what is not stored.
func (w *walker) statRecordAt(dfd int, name, full, p string, st *unix.Stat_t) (r record, keep bool, err error) {
	r = record{
		path:  p,
		mnt:   w.mnt,
		mode:  tarMode(st.Mode),
		uid:   st.Uid,
		gid:   st.Gid,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		r.typ = typeFile
		r.size = st.Size
		if st.Nlink > 1 {
			r.hl = &hardLink{dev: st.Dev, ino: st.Ino}
		}
	case unix.S_IFDIR:
		r.typ = typeDir
	case unix.S_IFLNK:
		r.typ = typeSymlink
		buf := make([]byte, 256)
		for {
			n, err := unix.Readlinkat(dfd, name, buf)
			if err != nil {
				return r, false, fmt.Errorf("readlink %s: %w", full, err)
			}
			if n < len(buf) {
				r.link = string(buf[:n])
				break
			}
			buf = make([]byte, 2*len(buf))
		}
	case unix.S_IFIFO:
		r.typ = typeFifo
	case unix.S_IFSOCK:
		if w.skipped != nil {
			w.skipped.socket(p)
		}
		return r, false, nil
	default:
		if w.forPush {
			return r, false, refuse(p, "device file in the workspace (a delta cannot hold devices)")
		}
		return r, false, nil
	}
	return r, true, nil
}

// openLong opens a file by a path that may be longer than PATH_MAX, by
// opening it in pieces below PATH_MAX, each relative to the directory the
// previous one reached (symlinks resolve as the kernel resolves them in one
// open).
func openLong(name string) (*os.File, error) {
	const max = unix.PathMax - 1
	if len(name) < max {
		return os.Open(name)
	}
	dfd := unix.AT_FDCWD
	rest := name
	for len(rest) >= max {
		i := strings.LastIndexByte(rest[:max], '/')
		if i <= 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: unix.ENAMETOOLONG}
		}
		nfd, err := unix.Openat(dfd, rest[:i], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if dfd != unix.AT_FDCWD {
			unix.Close(dfd)
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		dfd, rest = nfd, rest[i+1:]
	}
	fd, err := unix.Openat(dfd, rest, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if dfd != unix.AT_FDCWD {
		unix.Close(dfd)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// baseline is what pull leaves in the state directory for push: exactly
// the ancestors' state it applied (not whatever else was in the directory:
// what a sidecar or the kubelet put there before the steps is the task's
// own change, as on a PVC), and the views it resolved.
type baseline struct {
	applied []string // manifest digests applied by the pull, in order
	views   []viewRecord
	records map[string]*record
}

// viewRecord is a mount as the pull resolved it.
type viewRecord struct{ dir, subPath, view string }

const baselineFile = "baseline.v2"

// makeStateDir creates the state directory: it holds the baseline and the
// spill files of big layers (so the step image needs no /tmp).
func makeStateDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state %s: %w", dir, err)
	}
	return nil
}

func writeBaseline(stateDir string, applied []string, mounts []*mount, recs []record) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(stateDir, ".baseline-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 256<<10)
	var buf [binary.MaxVarintLen64]byte
	uv := func(v uint64) { bw.Write(buf[:binary.PutUvarint(buf[:], v)]) }
	iv := func(v int64) { bw.Write(buf[:binary.PutVarint(buf[:], v)]) }
	str := func(s string) { uv(uint64(len(s))); bw.WriteString(s) }
	bw.WriteString("OTB2")
	uv(uint64(len(applied)))
	for _, a := range applied {
		str(a)
	}
	uv(uint64(len(mounts)))
	for _, m := range mounts {
		str(m.abs)
		str(m.SubPath)
		str(m.view)
	}
	uv(uint64(len(recs)))
	for i := range recs {
		r := &recs[i]
		str(r.path)
		bw.WriteByte(r.typ)
		uv(uint64(r.mode))
		uv(uint64(r.uid))
		uv(uint64(r.gid))
		iv(r.size)
		iv(r.mtime)
		iv(r.ctime)
		str(r.link)
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	// The pull and the push may run as different users (a root first step,
	// a non-root last step): the baseline holds only metadata, let both read it.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(stateDir, baselineFile))
}

// readBaseline returns an empty baseline when pull never ran.
func readBaseline(stateDir string) (*baseline, error) {
	b := &baseline{records: map[string]*record{}}
	if stateDir == "" {
		return b, nil
	}
	data, err := os.ReadFile(filepath.Join(stateDir, baselineFile))
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, err
	}
	if len(data) < 4 || string(data[:4]) != "OTB2" {
		return nil, fmt.Errorf("state %s: not a baseline file", stateDir)
	}
	d := decoder{b: data[4:]}
	n := d.uv()
	for i := uint64(0); i < n && d.err == nil; i++ {
		b.applied = append(b.applied, d.str())
	}
	n = d.uv()
	for i := uint64(0); i < n && d.err == nil; i++ {
		b.views = append(b.views, viewRecord{dir: d.str(), subPath: d.str(), view: d.str()})
	}
	n = d.uv()
	recs := make([]record, 0, min(n, 1<<20))
	for i := uint64(0); i < n && d.err == nil; i++ {
		var r record
		r.path = d.str()
		r.typ = d.byte()
		r.mode = uint32(d.uv())
		r.uid = uint32(d.uv())
		r.gid = uint32(d.uv())
		r.size = d.iv()
		r.mtime = d.iv()
		r.ctime = d.iv()
		r.link = d.str()
		recs = append(recs, r)
	}
	if d.err != nil {
		return nil, fmt.Errorf("state %s: corrupt baseline: %w", stateDir, d.err)
	}
	for i := range recs {
		b.records[recs[i].path] = &recs[i]
	}
	return b, nil
}

// applyViews gives the push's mounts the views the pull resolved for the
// same directory and subPath (a mount the pull did not have keeps its
// subPath), and re-marks the covered ones.
func (b *baseline) applyViews(ms []*mount) {
	for _, m := range ms {
		for _, v := range b.views {
			if v.dir == m.abs && v.subPath == m.SubPath {
				m.view = v.view
			}
		}
	}
	markCovered(ms)
}

// visibleTo keeps the records that one of the mounts shows: a push is given
// only the task's writable views, and what it cannot see it did not change
// (a readOnly view's files are not deletions).
func (b *baseline) visibleTo(ms []*mount) map[string]*record {
	out := make(map[string]*record, len(b.records))
	for p, r := range b.records {
		for _, m := range ms {
			if _, ok := m.local(p); ok {
				out[p] = r
				break
			}
		}
	}
	return out
}

type decoder struct {
	b   []byte
	err error
}

var errShort = io.ErrUnexpectedEOF

func (d *decoder) uv() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}
func (d *decoder) iv() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}
func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}
func (d *decoder) str() string {
	n := d.uv()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errShort
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// diff compares the current records with the baseline: changed holds what
// to store (new or modified), deleted the top-most paths that are gone or
// changed type. changed is cur's own storage, compacted in order (a big
// tree's records are not copied): cur's other records are overwritten.
func diff(base map[string]*record, cur []record) (changed []record, deleted []string) {
	changed = cur[:0]
	for i := range cur {
		r := &cur[i]
		old, ok := base[r.path]
		if ok {
			old.seen = true
		}
		if ok && old.same(r) {
			continue
		}
		if ok && old.typ != r.typ {
			deleted = append(deleted, r.path)
		}
		changed = append(changed, *r)
	}
	clear(cur[len(changed):]) // their strings can go
	gone := map[string]struct{}{}
	for p, r := range base {
		if !r.seen {
			gone[p] = struct{}{}
		}
	}
	for p := range gone {
		if !ancestorIn(p, gone) {
			deleted = append(deleted, p)
		}
	}
	sort.Strings(deleted)
	return changed, dedupSorted(deleted)
}

func dedupSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// under reports whether p is q or below q ("" is the root, above all).
func under(p, q string) bool {
	if q == "" {
		return true
	}
	return p == q || len(p) > len(q) && p[len(q)] == '/' && p[:len(q)] == q
}

// ancestorIn reports whether a strict ancestor of p is in set.
func ancestorIn(p string, set map[string]struct{}) bool {
	for {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return false
		}
		p = p[:i]
		if _, ok := set[p]; ok {
			return true
		}
	}
}
