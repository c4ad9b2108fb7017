package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

func file(sum string) entry {
	return entry{Type: "file", Mode: "644", Owner: "0:0", Size: "1", Sha256: sum}
}
func dir() entry                { return entry{Type: "dir", Mode: "755", Owner: "0:0"} }
func dirMode(mode string) entry { return entry{Type: "dir", Mode: mode, Owner: "0:0"} }
func link(target string) entry {
	return entry{Type: "symlink", Mode: "777", Owner: "0:0", Target: target}
}

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

// oldChange is the model before pod-start additions: a task's change was its
// after-view minus its own before-view, so what appeared in its pod before
// its steps was nobody's.
func oldChange(p pod) delta {
	d := delta{Set: tree{}}
	for _, b := range p {
		d.merge(diffViews(b.subPath, b.before, b.after))
	}
	return d
}

// The PVC run of a build pipeline: checkout writes src; build binds src, a
// cache subPath its sidecar fills before the steps start, and a logs subPath
// that does not exist yet (the kubelet creates it, nothing is written to it);
// report binds the root.
func sidecarRun() (checkout, build pod, reportBefore tree) {
	checkout = pod{{subPath: "", before: tree{}, after: tree{"src": dir(), "src/main.c": file("m")}}}
	build = pod{
		{subPath: "src",
			before: tree{"main.c": file("m"), ".deps-resolved": file("d")},
			after:  tree{"main.c": file("m"), ".deps-resolved": file("d"), "app": file("a")}},
		{subPath: "cache/deps",
			before: tree{"lib.a": file("l"), "READY": file("r")},
			after:  tree{"lib.a": file("l"), "READY": file("r")}},
		{subPath: "logs/build", before: tree{}, after: tree{}},
	}
	// the PVC's root is 750, so are the directories the kubelet made in it
	reportBefore = tree{"src": dir(), "src/main.c": file("m"), "src/.deps-resolved": file("d"), "src/app": file("a"),
		"cache": dirMode("750"), "cache/deps": dirMode("750"), "cache/deps/lib.a": file("l"), "cache/deps/READY": file("r"),
		"logs": dirMode("750"), "logs/build": dirMode("750")}
	return
}

// The blind spot: a converted run that drops what build's sidecar wrote and
// the logs directory the kubelet created passed the old model, although the
// PVC run's report saw both. The new model expects them.
func TestSidecarWritesAndKubeletDirsReachLaterTasks(t *testing.T) {
	checkout, build, pvcReport := sidecarRun()
	// the converted report saw only what the steps of its ancestors wrote
	droppedReport := tree{"src": dir(), "src/main.c": file("m"), "src/app": file("a")}

	old := tree{}
	old.apply(oldChange(checkout))
	old.apply(oldChange(build))
	if diff := diffLines(old.view(""), droppedReport); len(diff) != 0 {
		t.Fatalf("the old model was expected to be blind here, it found:\n%s", strings.Join(diff, "\n"))
	}

	h := replay([]turn{
		{task: "checkout", instance: "checkout", seq: 1, subPaths: []string{""}, pod: checkout},
		{task: "build", instance: "build", seq: 2, subPaths: []string{"src", "cache/deps", "logs/build"}, pod: build},
	})
	anc := h.stateOf(map[string]bool{"checkout": true, "build": true})
	want, _ := expect(anc, change{}, "")
	diff := diffLines(want, droppedReport)
	got := strings.Join(diff, "\n")
	for _, p := range []string{"src/.deps-resolved", "cache/deps/lib.a", "cache/deps/READY", "logs/build"} {
		if !strings.Contains(got, "missing   "+p+" ") {
			t.Errorf("no missing %s in:\n%s", p, got)
		}
	}
	// a faithful converted run: its kubelet made the directories in an
	// emptyDir (mode 777): their mode is not compared
	faithful := pvcReport.clone()
	for _, p := range []string{"cache", "cache/deps", "logs", "logs/build"} {
		faithful[p] = dirMode("777")
	}
	if diff := diffLines(want, faithful); len(diff) != 0 {
		t.Fatalf("a faithful converted report differs:\n%s", strings.Join(diff, "\n"))
	}
	// and the model agrees with the PVC run itself
	if diff := diffLines(want, pvcReport); len(diff) != 0 {
		t.Fatalf("the model differs from the PVC run:\n%s", strings.Join(diff, "\n"))
	}
}

// The converted build must see its ancestors' state plus what its own pod
// added before the steps (its sidecar runs in the converted pod too), and
// after its steps that plus what the steps did, a deletion of a sidecar's
// file included.
func TestConvertedTaskSeesItsPodStart(t *testing.T) {
	checkout, build, _ := sidecarRun()
	build[0].after = tree{"main.c": file("m"), "app": file("a")} // the steps delete .deps-resolved
	h := replay([]turn{
		{task: "checkout", instance: "checkout", seq: 1, subPaths: []string{""}, pod: checkout},
		{task: "build", instance: "build", seq: 2, subPaths: []string{"src", "cache/deps", "logs/build"}, pod: build},
	})
	steps, _ := h.instance("build", "build")
	c := h.own("build", []string{"src", "cache/deps", "logs/build"}).withSteps(steps)
	if _, ok := c.podStart.Set["src/.deps-resolved"]; !ok || len(c.podStart.Set) != 3 {
		t.Fatalf("pod start = %v", c.podStart)
	}
	if strings.Join(c.steps.Deleted, ",") != "src/.deps-resolved" || len(c.steps.Set) != 1 {
		t.Fatalf("steps = %+v", c.steps)
	}
	anc := h.stateOf(map[string]bool{"checkout": true})
	before, after := expect(anc, c, "src")
	if diff := diffLines(tree{"main.c": file("m"), ".deps-resolved": file("d")}, before); len(diff) != 0 {
		t.Fatalf("before:\n%s", strings.Join(diff, "\n"))
	}
	if diff := diffLines(tree{"main.c": file("m"), "app": file("a")}, after); len(diff) != 0 {
		t.Fatalf("after:\n%s", strings.Join(diff, "\n"))
	}
	if before, _ := expect(anc, c, "cache/deps"); len(before) != 2 {
		t.Fatalf("cache view before = %v", before)
	}
	// the old model wanted the sidecar's files gone from the converted view
	old := tree{}
	old.apply(oldChange(checkout))
	if _, ok := old.view("src")[".deps-resolved"]; ok {
		t.Fatal("the old model knew the sidecar's file")
	}
}

// The pods of a matrix task start at once: the first instance to take the
// lock may see what every pod's sidecar wrote (sidecar.log); later ones find
// it in the state. It is the task's pod start, so every converted instance
// must see it; each instance's steps are its own.
func TestMatrixPodStartIsWhatAnyInstanceSaw(t *testing.T) {
	base := pod{{subPath: "", before: tree{}, after: tree{"VERSION": file("v")}}}
	one := pod{{subPath: "", before: tree{"VERSION": file("v"), "sidecar.log": file("s")},
		after: tree{"VERSION": file("v"), "sidecar.log": file("s"), "app-1": file("1")}}}
	two := pod{{subPath: "", before: tree{"VERSION": file("v"), "sidecar.log": file("s"), "app-1": file("1")},
		after: tree{"VERSION": file("v"), "sidecar.log": file("s"), "app-1": file("1"), "app-2": file("2")}}}
	h := replay([]turn{
		{task: "build", instance: "build-1", seq: 3, subPaths: []string{""}, pod: two},
		{task: "prepare", instance: "prepare", seq: 1, subPaths: []string{""}, pod: base},
		{task: "build", instance: "build-0", seq: 2, subPaths: []string{""}, pod: one},
	})
	own := h.own("build", []string{""})
	if len(own.podStart.Set) != 1 || own.podStart.Set["sidecar.log"].Type != "file" {
		t.Fatalf("pod start = %v", own.podStart)
	}
	anc := h.stateOf(map[string]bool{"prepare": true})
	for inst, app := range map[string]string{"build-0": "app-1", "build-1": "app-2"} {
		steps, ok := h.instance("build", inst)
		if !ok || len(steps.Set) != 1 || len(steps.Deleted) != 0 {
			t.Fatalf("%s steps = %+v", inst, steps)
		}
		before, after := expect(anc, own.withSteps(steps), "")
		if diff := diffLines(tree{"VERSION": file("v"), "sidecar.log": file("s")}, before); len(diff) != 0 {
			t.Errorf("%s before:\n%s", inst, strings.Join(diff, "\n"))
		}
		if diff := diffLines(tree{"VERSION": file("v"), "sidecar.log": file("s"), app: file(app[4:])}, after); len(diff) != 0 {
			t.Errorf("%s after:\n%s", inst, strings.Join(diff, "\n"))
		}
	}
}

// A subPath that is a symlink inside the volume is resolved by the kubelet:
// the view is the link's target, and writes through it land there.
func TestSubPathThroughSymlink(t *testing.T) {
	s := tree{"releases": dir(), "releases/v1": dir(), "releases/v1/app": file("a"), "current": link("releases/v1"),
		"up": link("../outside"), "abs": link("/etc"), "loop": link("loop")}
	if got := s.resolve("current"); got != "releases/v1" {
		t.Fatalf("resolve(current) = %q", got)
	}
	if got := s.resolve("current/sub"); got != "releases/v1/sub" {
		t.Fatalf("resolve(current/sub) = %q", got)
	}
	for _, sp := range []string{"up", "abs", "loop", "missing/x"} {
		if got := s.resolve(sp); got != sp {
			t.Errorf("resolve(%s) = %q, want it unresolved", sp, got)
		}
	}
	if v := s.view("current"); len(v) != 1 || v["app"].Sha256 != "a" {
		t.Fatalf("view(current) = %v", v)
	}
	c := observeChange(s, []string{"current"}, []pod{{{subPath: "current",
		before: tree{"app": file("a")}, after: tree{"app": file("a"), "notes": file("n")}}}})
	if _, ok := c.steps.Set["releases/v1/notes"]; !ok || len(c.podStart.Set) != 0 {
		t.Fatalf("change = %+v", c)
	}
	if k := kubeletDirs(s, []string{"current"}); len(k.Set) != 0 {
		t.Fatalf("an existing link target needs no directory: %v", k.Set)
	}
}

// The kubelet's directories are implicit (type only) and never replace a
// directory the state knows in full.
func TestKubeletDirs(t *testing.T) {
	s := tree{"cache": dirMode("700")}
	k := kubeletDirs(s, []string{"", "cache/deps", "logs/build/"})
	var got []string
	for p, e := range k.Set {
		if !e.implicit {
			t.Errorf("%s is not implicit", p)
		}
		got = append(got, p)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "cache/deps,logs,logs/build" {
		t.Fatalf("kubelet dirs = %v", got)
	}
	s.apply(delta{Set: tree{"cache": {Type: "dir", implicit: true}}})
	if s["cache"].Mode != "700" {
		t.Fatalf("an implicit directory replaced a known one: %v", s["cache"])
	}
}

// finally tasks run at once after every task; the lock serializes them on
// the PVC too, and the replay knows what each found there (f2 found f1's
// file: not its change). A converted finally task starts from what the
// tasks left, without another finally task's change.
func TestReplayFinallyInLockOrder(t *testing.T) {
	h := replay([]turn{
		{task: "a", instance: "a", seq: 1, subPaths: []string{""}, pod: pod{{subPath: "", before: tree{}, after: tree{"a": file("a")}}}},
		{task: "f2", instance: "f2", seq: 3, subPaths: []string{""}, pod: pod{{subPath: "", before: tree{"a": file("a"), "f1": file("1")}, after: tree{"f1": file("1"), "f2": file("2")}}}},
		{task: "f1", instance: "f1", seq: 2, subPaths: []string{""}, pod: pod{{subPath: "", before: tree{"a": file("a")}, after: tree{"a": file("a"), "f1": file("1")}}}},
	})
	steps, _ := h.instance("f2", "f2")
	if len(steps.Set) != 1 || strings.Join(steps.Deleted, ",") != "a" {
		t.Fatalf("f2 = %+v", steps)
	}
	if c := h.own("skipped", []string{"never"}); c.ran || !c.podStart.empty() {
		t.Fatalf("a skipped task changed something: %+v", c)
	}
	anc := h.stateOf(map[string]bool{"a": true, "skipped": true})
	if len(anc) != 1 {
		t.Fatalf("state = %v (a skipped task's subPath has no kubelet directory)", anc)
	}
	before, after := expect(anc, h.own("f2", []string{""}).withSteps(steps), "")
	if diff := diffLines(tree{"a": file("a")}, before); len(diff) != 0 {
		t.Fatalf("converted f2 before:\n%s", strings.Join(diff, "\n"))
	}
	if diff := diffLines(tree{"f2": file("2")}, after); len(diff) != 0 {
		t.Fatalf("converted f2 after:\n%s", strings.Join(diff, "\n"))
	}
}

// A view the observer never printed (its step failed or never ran) says
// nothing: it is not an empty view that deleted everything.
func TestUnprintedViewIsUnknown(t *testing.T) {
	s := tree{"a": file("a")}
	c := observeChange(s, []string{""}, []pod{{{subPath: "", before: tree{"a": file("a")}, after: nil}}})
	if !c.steps.empty() {
		t.Fatalf("steps = %+v", c.steps)
	}
}

// ---- serialization by the PVC's lock (issue 17, items 3 and 4)

// Two parallel tasks on one PVC: the lock gave `b` its turn before `a`.
// Replayed in topological order (the old model, whose runAfter edges made
// that the real order), a's before-view on the PVC shows b's files as if
// a's own pod had made them, and the converted `a` (which never sees b's
// files) would be a false difference. Replayed in lock order, it is right.
func TestReplayFollowsTheLockOrder(t *testing.T) {
	a := pod{{subPath: "", before: tree{"out": dir(), "out/b": file("b")}, after: tree{"out": dir(), "out/b": file("b"), "out/a": file("a")}}}
	b := pod{{subPath: "", before: tree{}, after: tree{"out": dir(), "out/b": file("b")}}}
	convertedA := tree{"out": dir(), "out/a": file("a")} // after its steps; it saw nothing before

	// the old model: topological order a, b
	old := replay([]turn{{task: "a", instance: "a", seq: 1, subPaths: []string{""}, pod: a}, {task: "b", instance: "b", seq: 2, subPaths: []string{""}, pod: b}})
	oldSteps, _ := old.instance("a", "a")
	oldBefore, _ := expect(tree{}, old.own("a", []string{""}).withSteps(oldSteps), "")
	if diff := diffLines(oldBefore, tree{}); len(diff) == 0 {
		t.Fatal("replayed in topological order, the converted a was expected to differ (b's files as its pod start)")
	}

	// the lock order the observers printed: b 1, a 2
	h := replay([]turn{{task: "a", instance: "a", seq: 2, subPaths: []string{""}, pod: a}, {task: "b", instance: "b", seq: 1, subPaths: []string{""}, pod: b}})
	if h.turns[0].task != "b" {
		t.Fatalf("replay order = %v", h.turns)
	}
	steps, _ := h.instance("a", "a")
	before, after := expect(h.stateOf(nil), h.own("a", []string{""}).withSteps(steps), "")
	if diff := diffLines(before, tree{}); len(diff) != 0 {
		t.Fatalf("converted a before:\n%s", strings.Join(diff, "\n"))
	}
	if diff := diffLines(after, convertedA); len(diff) != 0 {
		t.Fatalf("converted a after:\n%s", strings.Join(diff, "\n"))
	}
	// a turn without a number (its before-observer printed none) goes last
	if h := replay([]turn{{task: "x", seq: 0}, {task: "y", seq: 2}, {task: "z", seq: 1}}); h.turns[0].task != "z" || h.turns[2].task != "x" {
		t.Fatalf("order = %v", h.turns)
	}
}

// matrixDeletionsRun is the PVC run of testdata/matrix-deletions.yaml as the
// lock ordered it: prepare, then build's instances 2, 0, 1; instance 0
// (platform "clean") deletes dist/stale.txt, which instance 1 then no longer
// found on the PVC, and which instance 2 (before it) still saw.
func matrixDeletionsRun() []turn {
	prep := tree{"VERSION": file("v"), "dist": dir(), "dist/stale.txt": file("old")}
	after2 := tree{"VERSION": file("v"), "dist": dir(), "dist/stale.txt": file("old"), "dist/app-windows": file("w")}
	after0 := tree{"VERSION": file("v"), "dist": dir(), "dist/app-windows": file("w"), "dist/app-linux": file("l")}
	return []turn{
		{task: "prepare", instance: "prepare", seq: 1, subPaths: []string{""}, pod: pod{{subPath: "", before: tree{}, after: prep}}},
		{task: "build", instance: "build-2", seq: 2, subPaths: []string{""}, pod: pod{{subPath: "", before: prep, after: after2}}},
		{task: "build", instance: "build-0", seq: 3, subPaths: []string{""}, pod: pod{{subPath: "", before: after2, after: after0}}},
		{task: "build", instance: "build-1", seq: 4, subPaths: []string{""}, pod: pod{{subPath: "", before: after0,
			after: tree{"VERSION": file("v"), "dist": dir(), "dist/app-windows": file("w"), "dist/app-linux": file("l"), "dist/app-darwin": file("d")}}}},
	}
}

// One matrix instance deletes a file the others still see (converted, each
// instance has its own copy of what prepare left). The old model compared
// the union of the instances' after-views with every instance's changes
// applied: stale.txt, deleted by one, shown by two, was a false difference.
// Each instance is judged by its own change; the join sees all of them.
func TestMatrixInstancesJudgedByTheirOwnChange(t *testing.T) {
	h := replay(matrixDeletionsRun())
	prep := tree{"VERSION": file("v"), "dist": dir(), "dist/stale.txt": file("old")}
	// what each converted instance showed after its steps
	converted := map[string]tree{
		"build-0": {"VERSION": file("v"), "dist": dir(), "dist/app-linux": file("l")},
		"build-1": {"VERSION": file("v"), "dist": dir(), "dist/stale.txt": file("old"), "dist/app-darwin": file("d")},
		"build-2": {"VERSION": file("v"), "dist": dir(), "dist/stale.txt": file("old"), "dist/app-windows": file("w")},
	}
	anc := h.stateOf(map[string]bool{"prepare": true})
	own := h.own("build", []string{""})

	// the old model: one change for the task, the union of the after-views
	all := delta{Set: tree{}}
	for _, inst := range []string{"build-2", "build-0", "build-1"} {
		d, _ := h.instance("build", inst)
		all.merge(d)
	}
	union := tree{}
	for _, v := range converted {
		for p, e := range v {
			union[p] = e
		}
	}
	_, oldWant := expect(anc, own.withSteps(all), "")
	if diff := strings.Join(diffLines(oldWant, union), "\n"); !strings.Contains(diff, "unexpected dist/stale.txt") {
		t.Fatalf("the old model was expected to report stale.txt, it said:\n%s", diff)
	}

	for inst, got := range converted {
		steps, ok := h.instance("build", inst)
		if !ok {
			t.Fatalf("no PVC turn for %s", inst)
		}
		before, after := expect(anc, own.withSteps(steps), "")
		if diff := diffLines(before, prep); len(diff) != 0 {
			t.Errorf("%s before:\n%s", inst, strings.Join(diff, "\n"))
		}
		if diff := diffLines(after, got); len(diff) != 0 {
			t.Errorf("%s after:\n%s", inst, strings.Join(diff, "\n"))
		}
	}
	// instance 1 deleted nothing (stale.txt was gone when it came): it must
	// not be expected to delete it; instance 0 must
	if d, _ := h.instance("build", "build-1"); len(d.Deleted) != 0 {
		t.Errorf("build-1 deleted %v", d.Deleted)
	}
	if d, _ := h.instance("build", "build-0"); strings.Join(d.Deleted, ",") != "dist/stale.txt" {
		t.Errorf("build-0 deleted %v", d.Deleted)
	}
	// a converted instance that kept stale.txt although it deleted it on the PVC differs
	_, want0 := expect(anc, own.withSteps(func() delta { d, _ := h.instance("build", "build-0"); return d }()), "")
	if diff := strings.Join(diffLines(want0, converted["build-2"]), "\n"); !strings.Contains(diff, "unexpected dist/stale.txt") {
		t.Errorf("a wrong instance was not caught:\n%s", diff)
	}
	// the join: every instance's change, in lock order
	join := h.stateOf(map[string]bool{"prepare": true, "build": true})
	want := tree{"VERSION": file("v"), "dist": dir(), "dist/app-linux": file("l"), "dist/app-darwin": file("d"), "dist/app-windows": file("w")}
	if diff := diffLines(join, want); len(diff) != 0 {
		t.Fatalf("join:\n%s", strings.Join(diff, "\n"))
	}
}

func TestLockTurnsParse(t *testing.T) {
	got := lockTurns("EQ-LOCK source 3\nEQ-LOCK cache 3\nEQ-LOCK-TAKEOVER x pvc-a/pod\nEQ-LOCK bad x\nEQ|source|./a|file|644|0:0|1|x|\n")
	if len(got) != 2 || got["source"] != 3 || got["cache"] != 3 {
		t.Fatalf("turns = %v", got)
	}
	if instanceOf("pvc", "pvc-build-2") != "build-2" || instanceOf("oci", "oci-build-2") != "build-2" {
		t.Fatal("instanceOf")
	}
}

// oldSerial is the PVC twin the harness used to build: each non-finally
// task runAfter the previous one along topo's order.
func oldSerial(ps obj, order []*ptask) obj {
	b, _ := json.Marshal(ps)
	var cp obj
	_ = json.Unmarshal(b, &cp)
	byName := map[string]obj{}
	for _, t := range list(cp, "tasks") {
		byName[s(t.(obj), "name")] = t.(obj)
	}
	prev := ""
	for _, t := range order {
		if t.finally {
			continue
		}
		if prev != "" {
			byName[t.name]["runAfter"] = append(list(byName[t.name], "runAfter"), prev)
		}
		prev = t.name
	}
	return cp
}

var resultRefRE = regexp.MustCompile(`\$\(tasks\.([a-z0-9-]+)\.results\.`)

// tektonSkips is Tekton's skipping (pipelinerunresolution.go, v1.15, `when`
// scoped to the task) for a run in which the tasks of whenFalse have a
// `when` that evaluates to false: a task is skipped for its `when`; else if
// a parent was skipped for another reason than its `when`; else if it uses
// a result of a parent skipped for its `when` (a missing result).
func tektonSkips(spec obj, whenFalse map[string]bool) map[string]string {
	tasks := pipelineTasks(spec, nil)
	uses := map[string][]string{}
	for _, t := range list(spec, "tasks") {
		b, _ := json.Marshal(t.(obj)["params"])
		for _, mm := range resultRefRE.FindAllStringSubmatch(string(b), -1) {
			uses[s(t.(obj), "name")] = append(uses[s(t.(obj), "name")], mm[1])
		}
	}
	skip := map[string]string{}
	for _, t := range topo(tasks) {
		if t.finally {
			continue
		}
		switch {
		case whenFalse[t.name]:
			skip[t.name] = "When"
		default:
			for _, d := range t.deps {
				if r := skip[d]; r != "" && r != "When" {
					skip[t.name] = "ParentTasksSkip"
				}
			}
			for _, u := range uses[t.name] {
				if skip[t.name] == "" && skip[u] == "When" {
					skip[t.name] = "MissingResults"
				}
			}
		}
	}
	return skip
}

// The PVC run must have the user's DAG. testdata/when-results.yaml: publish
// is skipped by its `when`, announce for publish's missing result; docs and
// package run. The old runAfter serialization made docs a descendant of
// announce, so Tekton skipped docs and package on the PVC (the false
// difference "skipped tasks: PVC [announce,docs,package,publish], converted
// [announce,publish]"). The lock bindings change nothing of the DAG.
func TestPVCTwinKeepsTheDAG(t *testing.T) {
	docs, err := readDocs([]string{"testdata/when-results.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	pspec := m(docs[0], "spec", "pipelineSpec")
	tasks := pipelineTasks(pspec, nil)
	whenFalse := map[string]bool{"publish": true} // detect's result is "no"
	names := func(skip map[string]string) string { return strings.Join(slices.Sorted(maps.Keys(skip)), ",") }

	if got := names(tektonSkips(pspec, whenFalse)); got != "announce,publish" {
		t.Fatalf("the user's pipeline skips %s", got)
	}
	if got := names(tektonSkips(oldSerial(pspec, topo(tasks)), whenFalse)); got != "announce,docs,package,publish" {
		t.Fatalf("the old serialized twin was expected to skip docs and package too, it skips %s", got)
	}
	twin := lockBindings(pspec, tasks, map[string]bool{"ws": true})
	if got := names(tektonSkips(twin, whenFalse)); got != "announce,publish" {
		t.Fatalf("the PVC twin skips %s", got)
	}
	// the same dependencies, and every task binds its lock at the PVC's root
	// (docs binds only the subPath site)
	for i, tt := range pipelineTasks(twin, nil) {
		if strings.Join(tt.deps, ",") != strings.Join(tasks[i].deps, ",") {
			t.Errorf("%s: deps %v, the user's %v", tt.name, tt.deps, tasks[i].deps)
		}
		var lock []binding
		for _, b := range tt.bindings {
			if strings.HasPrefix(b.taskWS, "eq-lock-") {
				lock = append(lock, b)
			}
		}
		want := binding{taskWS: lockWorkspace(tasks[i].bindings[0].taskWS), pipelineWS: "ws"}
		if len(lock) != 1 || lock[0] != want {
			t.Errorf("%s: lock bindings %v, want [%v]", tt.name, lock, want)
		}
	}
	// the user's spec itself is untouched
	if strings.Contains(fmt.Sprint(pspec), "eq-lock-") {
		t.Error("lockBindings changed the user's spec")
	}
}

// A task binding one PVC through two views takes its lock once (both
// views print the same turn); a workspace that is not converted gets none.
func TestLockBindingsOncePerTaskWorkspace(t *testing.T) {
	ps := obj{"tasks": []any{obj{"name": "publish", "workspaces": []any{
		obj{"name": "source", "workspace": "workarea", "subPath": "git"},
		obj{"name": "output", "workspace": "workarea", "subPath": "bucket"},
		obj{"name": "creds", "workspace": "secret"},
	}}}}
	tw := lockBindings(ps, pipelineTasks(ps, nil), map[string]bool{"workarea": true})
	var got []string
	for _, w := range list(list(tw, "tasks")[0].(obj), "workspaces") {
		got = append(got, s(w.(obj), "name")+">"+s(w.(obj), "workspace")+"/"+s(w.(obj), "subPath"))
	}
	if strings.Join(got, " ") != "source>workarea/git output>workarea/bucket creds>secret/ eq-lock-source>workarea/ eq-lock-output>workarea/" {
		t.Fatalf("bindings = %v", got)
	}
	sc := s(observer(stepBefore, []string{"source", "output"}), "script")
	for _, want := range []string{"$(workspaces.eq-lock-source.claim) source $(workspaces.eq-lock-source.path)", `"$(workspaces.eq-lock-output.bound)" = true`, "-path ./" + lockDir + " -prune"} {
		if !strings.Contains(sc, want) {
			t.Errorf("the before-observer lacks %q", want)
		}
	}
}
