package main

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// entry is one path of a workspace view as an observer step printed it.
type entry struct {
	Type   string // file, dir, symlink, other
	Mode   string // octal permission bits
	Owner  string // uid:gid
	Size   string
	Sha256 string
	Target string // symlink target
	// implicit: a directory the model created as the parent of an observed
	// path (a subPath root that only the kubelet created): its type is
	// compared, not its mode or owner.
	implicit bool
}

func (e entry) String() string {
	switch e.Type {
	case "file":
		return fmt.Sprintf("file %s %s %sB sha256:%.12s", e.Mode, e.Owner, e.Size, e.Sha256)
	case "symlink":
		return fmt.Sprintf("symlink -> %s", e.Target)
	case "dir":
		if e.implicit {
			return "dir"
		}
		return fmt.Sprintf("dir %s %s", e.Mode, e.Owner)
	}
	return e.Type
}

func (e entry) equal(o entry) bool {
	if e.Type != o.Type {
		return false
	}
	switch e.Type {
	case "file":
		return e.Mode == o.Mode && e.Owner == o.Owner && e.Size == o.Size && e.Sha256 == o.Sha256
	case "symlink":
		return e.Target == o.Target
	case "dir":
		return e.implicit || o.implicit || (e.Mode == o.Mode && e.Owner == o.Owner)
	}
	return true
}

// tree is a workspace (or one view of it): slash-separated relative path -> entry.
type tree map[string]entry

// delta is what one task changed in a pipeline workspace, relative to its root.
type delta struct {
	Set     tree     // added or changed
	Deleted []string // paths gone (and everything under them)
}

func (d delta) empty() bool { return len(d.Set) == 0 && len(d.Deleted) == 0 }

func (t tree) clone() tree {
	out := make(tree, len(t))
	for p, e := range t {
		out[p] = e
	}
	return out
}

// view returns the part of the workspace root that a binding with subPath sees.
func (t tree) view(subPath string) tree {
	sp := strings.Trim(path.Clean("/"+subPath), "/")
	out := tree{}
	for p, e := range t {
		if sp == "" {
			out[p] = e
		} else if strings.HasPrefix(p, sp+"/") {
			out[strings.TrimPrefix(p, sp+"/")] = e
		}
	}
	return out
}

// rooted maps a view's paths back to the workspace root.
func rooted(subPath, p string) string {
	sp := strings.Trim(path.Clean("/"+subPath), "/")
	if sp == "" {
		return p
	}
	return sp + "/" + p
}

// diffViews gives the delta that turns before into after (both of one view),
// with paths relative to the workspace root.
func diffViews(subPath string, before, after tree) delta {
	d := delta{Set: tree{}}
	for p, e := range after {
		if b, ok := before[p]; !ok || !b.equal(e) {
			d.Set[rooted(subPath, p)] = e
		}
	}
	var gone []string
	for p := range before {
		if _, ok := after[p]; !ok {
			gone = append(gone, p)
		}
	}
	sort.Strings(gone)
	for _, p := range gone {
		// keep only top-most deleted paths
		if n := len(d.Deleted); n > 0 && strings.HasPrefix(rooted(subPath, p), d.Deleted[n-1]+"/") {
			continue
		}
		d.Deleted = append(d.Deleted, rooted(subPath, p))
	}
	return d
}

// merge folds another view's delta of the same task into d.
func (d *delta) merge(o delta) {
	for p, e := range o.Set {
		d.Set[p] = e
	}
	seen := map[string]bool{}
	for _, p := range d.Deleted {
		seen[p] = true
	}
	for _, p := range o.Deleted {
		if !seen[p] {
			d.Deleted = append(d.Deleted, p)
			seen[p] = true
		}
	}
	sort.Strings(d.Deleted)
}

// apply applies a delta to the workspace root (PVC semantics).
func (t tree) apply(d delta) {
	for _, del := range d.Deleted {
		for p := range t {
			if p == del || strings.HasPrefix(p, del+"/") {
				delete(t, p)
			}
		}
	}
	paths := make([]string, 0, len(d.Set))
	for p := range d.Set {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		e := d.Set[p]
		// a path replaced by another type loses what was under it
		if old, ok := t[p]; ok && old.Type == "dir" && e.Type != "dir" {
			for q := range t {
				if strings.HasPrefix(q, p+"/") {
					delete(t, q)
				}
			}
		}
		t[p] = e
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := t[dir]; !ok {
				t[dir] = entry{Type: "dir", implicit: true}
			}
		}
	}
}

// diffLines compares what a view should show (want) with what it showed
// (got), one line per differing path, sorted.
func diffLines(want, got tree) []string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("  missing   %s  (expected %s)", p, w))
		case !w.equal(g):
			out = append(out, fmt.Sprintf("  differs   %s  (expected %s, got %s)", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			out = append(out, fmt.Sprintf("  unexpected %s  (%s)", p, g))
		}
	}
	sort.Slice(out, func(i, j int) bool { return field(out[i], 1) < field(out[j], 1) })
	return out
}

func field(s string, i int) string {
	f := strings.Fields(s)
	if i < len(f) {
		return f[i]
	}
	return ""
}

// diffDeltas compares a task's own changes on the PVC with the converted run's.
func diffDeltas(pvc, oci delta) []string {
	out := diffLines(pvc.Set, oci.Set)
	for i := range out {
		out[i] = "  wrote:" + out[i][1:]
	}
	a, b := strings.Join(pvc.Deleted, ","), strings.Join(oci.Deleted, ",")
	if a != b {
		out = append(out, fmt.Sprintf("  deleted: PVC [%s], converted [%s]", a, b))
	}
	return out
}
