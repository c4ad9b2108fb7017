package main

import (
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
