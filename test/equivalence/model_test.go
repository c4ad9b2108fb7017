package main

import (
	"strings"
	"testing"
)

func file(sum string) entry {
	return entry{Type: "file", Mode: "644", Owner: "0:0", Size: "1", Sha256: sum}
}
func dir() entry { return entry{Type: "dir", Mode: "755", Owner: "0:0"} }

// The model the harness compares converted runs against: a task's own change
// through a subPath view, rooted at the workspace root, applied with PVC
// semantics (deletions, type changes), seen again through another view.
func TestModelSubPathDeltaAndView(t *testing.T) {
	before := tree{"src": dir(), "src/a": file("a"), "tmp": dir(), "tmp/x": file("x"), "d": dir(), "d/y": file("y")}
	after := tree{"src": dir(), "src/a": file("a2"), "new": file("n"), "d": file("was-dir")}
	d := diffViews("git", before, after)
	if got := strings.Join(d.Deleted, ","); got != "git/d/y,git/tmp" {
		t.Fatalf("deleted = %s", got)
	}
	if _, ok := d.Set["git/src/a"]; !ok || len(d.Set) != 3 {
		t.Fatalf("set = %v", d.Set)
	}

	state := tree{}
	state.apply(delta{Set: tree{"git/tmp/x": file("x"), "git/d/y": file("y"), "git/src/a": file("a")}})
	state.apply(d)
	root := state.view("")
	if _, ok := root["git"]; !ok || !root["git"].implicit {
		t.Fatalf("the subPath root should be an implicit directory: %v", root)
	}
	want := tree{"src": {Type: "dir", implicit: true}, "src/a": file("a2"), "new": file("n"), "d": file("was-dir")}
	if diff := diffLines(want, state.view("git")); len(diff) != 0 {
		t.Fatalf("view differs:\n%s", strings.Join(diff, "\n"))
	}
	if got := state.view("bucket"); len(got) != 0 {
		t.Fatalf("bucket view should be empty: %v", got)
	}
}

func TestDiffLinesReadable(t *testing.T) {
	want := tree{"a": file("1"), "b": file("2")}
	got := tree{"a": file("1"), "b": file("3"), "c": {Type: "symlink", Target: "a"}}
	lines := diffLines(want, got)
	if len(lines) != 2 || !strings.Contains(lines[0], "differs   b") || !strings.Contains(lines[1], "unexpected c") {
		t.Fatalf("diff = %q", lines)
	}
	if d := diffDeltas(delta{Set: tree{}, Deleted: []string{"tmp"}}, delta{Set: tree{}}); len(d) != 1 || !strings.Contains(d[0], "deleted: PVC [tmp], converted []") {
		t.Fatalf("delta diff = %q", d)
	}
}

func TestTopoAndAncestors(t *testing.T) {
	ts := []*ptask{
		{name: "join", deps: []string{"left", "right"}},
		{name: "left", deps: []string{"clone"}},
		{name: "right", deps: []string{"clone"}},
		{name: "clone"},
		{name: "report", finally: true},
	}
	var names []string
	for _, p := range topo(ts) {
		names = append(names, p.name)
	}
	if got := strings.Join(names, ","); got != "clone,left,right,join,report" {
		t.Fatalf("order = %s", got)
	}
	anc := ancestors(ts[1], ts)
	if len(anc) != 1 || !anc["clone"] {
		t.Fatalf("ancestors of left = %v", anc)
	}
	if anc := ancestors(ts[4], ts); len(anc) != 4 {
		t.Fatalf("finally sees every task: %v", anc)
	}
}

func TestObserverParses(t *testing.T) {
	v := views("EQ-VIEW src\nEQ|src|./a b|file|644|0:0|3|abc|\nnoise\nEQ|src|./l|symlink|777|0:0|0|-|a b\nEQ-VIEW empty\n")
	if len(v["src"]) != 2 || v["src"]["a b"].Sha256 != "abc" || v["src"]["l"].Target != "a b" || v["empty"] == nil {
		t.Fatalf("views = %v", v)
	}
}
