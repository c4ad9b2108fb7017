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
)

// record is what the baseline keeps of one path, and what push compares.
type record struct {
	path  string // relative to the pipeline workspace root, slash-separated
	typ   byte
	mode  uint32 // permission and setuid/setgid/sticky bits (tar encoding)
	uid   uint32
	gid   uint32
	size  int64
	mtime int64 // ns
	ctime int64 // ns; catches rewrites that keep size and mtime
	link  string
	src   string // local file to read (push only, not persisted)
	seen  bool   // diff: still present
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

// scanMount walks a mount and returns its records in walk order (parents
// before children, names sorted), with paths prefixed by the subPath. The
// mount root itself is included when sub is not the workspace root.
// Directories are read in parallel.
func scanMount(dir, sub string, withSrc bool) ([]record, error) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("mount %s is not a directory", dir)
	}
	var out []record
	if sub != "" {
		r, err := statRecord(dir, sub, &st)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	w := &walker{withSrc: withSrc, sem: make(chan struct{}, 8)}
	children, err := w.walk(dir, sub)
	if err != nil {
		return nil, err
	}
	return append(out, children...), nil
}

type walker struct {
	withSrc bool
	sem     chan struct{}
}

// walk returns the records below dir (not dir itself).
func (w *walker) walk(dir, rel string) ([]record, error) {
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(dfd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	sort.Strings(names)
	recs := make([]record, 0, len(names))
	type sub struct {
		idx  int
		recs []record
		err  error
		wg   sync.WaitGroup
	}
	var subs []*sub
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
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
		r, err := statRecordAt(dfd, name, full, p, &st)
		if err != nil {
			return nil, err
		}
		if r.typ == typeFile && w.withSrc {
			r.src = full
		}
		recs = append(recs, r)
		if r.typ == typeDir {
			s := &sub{idx: len(recs)}
			subs = append(subs, s)
			s.wg.Add(1)
			select {
			case w.sem <- struct{}{}:
				go func() {
					defer s.wg.Done()
					s.recs, s.err = w.walk(full, p)
					<-w.sem
				}()
			default:
				s.recs, s.err = w.walk(full, p)
				s.wg.Done()
			}
		}
	}
	if len(subs) == 0 {
		return recs, nil
	}
	out := make([]record, 0, len(recs))
	prev := 0
	for _, s := range subs {
		s.wg.Wait()
		if s.err != nil {
			return nil, s.err
		}
		out = append(out, recs[prev:s.idx]...)
		out = append(out, s.recs...)
		prev = s.idx
	}
	return append(out, recs[prev:]...), nil
}

func statRecord(full, p string, st *unix.Stat_t) (record, error) {
	return statRecordAt(unix.AT_FDCWD, full, full, p, st)
}

func statRecordAt(dfd int, name, full, p string, st *unix.Stat_t) (record, error) {
	r := record{
		path:  p,
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
	case unix.S_IFDIR:
		r.typ = typeDir
	case unix.S_IFLNK:
		r.typ = typeSymlink
		buf := make([]byte, 256)
		for {
			n, err := unix.Readlinkat(dfd, name, buf)
			if err != nil {
				return r, fmt.Errorf("readlink %s: %w", full, err)
			}
			if n < len(buf) {
				r.link = string(buf[:n])
				break
			}
			buf = make([]byte, 2*len(buf))
		}
	default:
		return r, refuse(p, "unsupported file type (device, FIFO or socket) in the workspace")
	}
	return r, nil
}

// baseline is what pull leaves in the state directory for push.
type baseline struct {
	applied []string // manifest digests applied by the pull, in order
	records map[string]*record
}

const baselineFile = "baseline.v1"

func writeBaseline(stateDir string, applied []string, recs []record) error {
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
	bw.WriteString("OTB1")
	uv(uint64(len(applied)))
	for _, a := range applied {
		str(a)
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
	if len(data) < 4 || string(data[:4]) != "OTB1" {
		return nil, fmt.Errorf("state %s: not a baseline file", stateDir)
	}
	d := decoder{b: data[4:]}
	n := d.uv()
	for i := uint64(0); i < n && d.err == nil; i++ {
		b.applied = append(b.applied, d.str())
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
// changed type.
func diff(base map[string]*record, cur []record) (changed []record, deleted []string) {
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
