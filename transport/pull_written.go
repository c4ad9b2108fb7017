package transport

import (
	"bytes"
	"hash/maphash"
	"math"
	"slices"
	"strings"
)

// writtenSet is what the applied deltas of a pull wrote: every path, with
// the delta and layer that last wrote it (conflicts, a path twice in one
// delta) until the baseline is written from it (pull_baseline.go).
//
// A pull of many small files holds one per entry, so it is compact and
// holds no pointer per entry (issue 16): a path is its directory, interned
// (a workspace has far fewer directories than files), and its last
// component, kept back to back in one byte arena; entries are 20 bytes in
// one slice and the index is an open-addressing table of 4-byte slots.
// About 40 bytes an entry plus its name where a map[string]writer took
// about 80 plus the whole path.
type writtenSet struct {
	dirIDs map[string]uint32 // directory -> id
	dirs   []string          // id -> directory ("" = the workspace root)
	names  []byte            // the entries' last components
	ents   []wentry
	slots  []uint32 // index+1 into ents, 0 = free; len is a power of 2
	live   int
	seed   maphash.Seed
}

type wentry struct {
	off, n uint32 // name in names
	dir    uint32
	delta  uint32 // deadDelta: deleted (the slot stays, a rewrite revives it)
	layer  uint32
}

const deadDelta = math.MaxUint32

// maxWrittenNames bounds the names' arena (the offsets are 32 bits): far
// above what --max-entries lets through with real names (2 000 000 names
// of 2 KiB each).
const maxWrittenNames = math.MaxUint32

func newWrittenSet() *writtenSet {
	return &writtenSet{dirIDs: map[string]uint32{"": 0}, dirs: []string{""}, slots: make([]uint32, 64), seed: maphash.MakeSeed()}
}

func splitPath(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

func (s *writtenSet) hash(dir uint32, name string) uint64 {
	return maphash.String(s.seed, name) ^ (uint64(dir)+1)*0x9e3779b97f4a7c15
}

// hashBytes is hash of a name in the arena (maphash hashes the same bytes
// the same as a string or a slice).
func (s *writtenSet) hashBytes(dir uint32, name []byte) uint64 {
	return maphash.Bytes(s.seed, name) ^ (uint64(dir)+1)*0x9e3779b97f4a7c15
}

func (s *writtenSet) name(e *wentry) string {
	return string(s.names[e.off : e.off+e.n])
}

// path is the workspace path of an entry.
func (s *writtenSet) path(e *wentry) string {
	if e.dir == 0 {
		return s.name(e)
	}
	return s.dirs[e.dir] + "/" + s.name(e)
}

// find returns the slot of p: the entry's index+1 there, or 0 where it
// would go.
func (s *writtenSet) find(dir uint32, name string) int {
	mask := len(s.slots) - 1
	for i := int(s.hash(dir, name)) & mask; ; i = (i + 1) & mask {
		x := s.slots[i]
		if x == 0 {
			return i
		}
		e := &s.ents[x-1]
		if e.dir == dir && int(e.n) == len(name) && string(s.names[e.off:e.off+e.n]) == name {
			return i
		}
	}
}

// get returns what last wrote p, if anything did (a deleted path is not
// there).
func (s *writtenSet) get(p string) (writer, bool) {
	d, name := splitPath(p)
	dir, ok := s.dirIDs[d]
	if !ok {
		return writer{}, false
	}
	x := s.slots[s.find(dir, name)]
	if x == 0 || s.ents[x-1].delta == deadDelta {
		return writer{}, false
	}
	e := &s.ents[x-1]
	return writer{int(e.delta), int(e.layer)}, true
}

// set records that w wrote p. false: the names are over maxWrittenNames.
func (s *writtenSet) set(p string, w writer) bool {
	d, name := splitPath(p)
	dir, ok := s.dirIDs[d]
	if !ok {
		dir = uint32(len(s.dirs))
		d = strings.Clone(d) // p may point into a whole tar header
		s.dirIDs[d] = dir
		s.dirs = append(s.dirs, d)
	}
	i := s.find(dir, name)
	if x := s.slots[i]; x != 0 {
		e := &s.ents[x-1]
		if e.delta == deadDelta {
			s.live++
		}
		e.delta, e.layer = uint32(w.delta), uint32(w.layer)
		return true
	}
	if uint64(len(s.names))+uint64(len(name)) > maxWrittenNames {
		return false
	}
	s.ents = append(s.ents, wentry{off: uint32(len(s.names)), n: uint32(len(name)), dir: dir, delta: uint32(w.delta), layer: uint32(w.layer)})
	s.names = append(s.names, name...)
	s.slots[i] = uint32(len(s.ents))
	s.live++
	if len(s.ents)*2 > len(s.slots) { // at most half full
		s.grow()
	}
	return true
}

func (s *writtenSet) grow() {
	s.slots = make([]uint32, 2*len(s.slots))
	mask := len(s.slots) - 1
	for k := range s.ents {
		e := &s.ents[k]
		i := int(s.hashBytes(e.dir, s.names[e.off:e.off+e.n])) & mask
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = uint32(k + 1)
	}
}

// deleteUnder removes every path at or below one of dels, calling fn with
// each removed path and what had written it, in one pass over the entries
// (a directory is below a deletion when it or one of its ancestors is
// one).
func (s *writtenSet) deleteUnder(dels []string, fn func(p string, w writer)) {
	if len(dels) == 0 || s.live == 0 {
		return
	}
	set := make(map[string]bool, len(dels))
	for _, p := range dels {
		set[p] = true
	}
	below := make([]bool, len(s.dirs)) // the directory is at or below a deletion
	for id, d := range s.dirs {
		if set[""] {
			below[id] = true
			continue
		}
		for q := d; q != ""; q, _ = splitPath(q) {
			if set[q] {
				below[id] = true
				break
			}
		}
	}
	for k := range s.ents {
		e := &s.ents[k]
		if e.delta == deadDelta {
			continue
		}
		if !below[e.dir] {
			if !set[s.path(e)] { // the deleted path itself
				continue
			}
		}
		w := writer{int(e.delta), int(e.layer)}
		e.delta = deadDelta
		s.live--
		fn(s.path(e), w)
	}
}

// sorted returns the indexes of the live entries, by directory and then
// name: the entries of one directory together, so the baseline stats them
// from one descriptor.
func (s *writtenSet) sorted() []uint32 {
	rank := make([]uint32, len(s.dirs))
	ids := make([]uint32, len(s.dirs))
	for i := range ids {
		ids[i] = uint32(i)
	}
	slices.SortFunc(ids, func(a, b uint32) int { return strings.Compare(s.dirs[a], s.dirs[b]) })
	for r, id := range ids {
		rank[id] = uint32(r)
	}
	out := make([]uint32, 0, s.live)
	for k := range s.ents {
		if s.ents[k].delta != deadDelta {
			out = append(out, uint32(k))
		}
	}
	slices.SortFunc(out, func(a, b uint32) int {
		ea, eb := &s.ents[a], &s.ents[b]
		if ea.dir != eb.dir {
			if rank[ea.dir] < rank[eb.dir] {
				return -1
			}
			return 1
		}
		return bytes.Compare(s.names[ea.off:ea.off+ea.n], s.names[eb.off:eb.off+eb.n])
	})
	return out
}
