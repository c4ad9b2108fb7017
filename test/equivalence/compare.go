package main

// Comparing the two runs: each task's view and changes, the registry, PVCs and metadata.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
)

// views parses an observer step's log: task workspace -> tree.
func views(log string) map[string]tree {
	out := map[string]tree{}
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "EQ-VIEW ") {
			out[strings.TrimPrefix(line, "EQ-VIEW ")] = tree{}
			continue
		}
		f := strings.SplitN(line, "|", 9)
		if len(f) != 9 || f[0] != "EQ" {
			continue
		}
		if out[f[1]] == nil {
			out[f[1]] = tree{}
		}
		out[f[1]][strings.TrimPrefix(f[2], "./")] = entry{Type: f[3], Mode: f[4], Owner: f[5], Size: f[6], Sha256: f[7], Target: f[8]}
	}
	return out
}

// lockTurns parses a before-observer's log: task workspace -> its turn with
// the lock of the PVC it is on (EQ-LOCK lines; none in the converted run).
func lockTurns(log string) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "EQ-LOCK" {
			if n, err := strconv.Atoi(f[2]); err == nil && n > 0 {
				out[f[1]] = n
			}
		}
	}
	return out
}

// instanceOf names a TaskRun's instance independently of its run: Tekton
// names TaskRuns <run>-<pipeline task>[-<matrix index>].
func instanceOf(run, taskRun string) string { return strings.TrimPrefix(taskRun, run+"-") }

// turns is what the observer steps of a task's TaskRuns in run printed for
// pipeline workspace w: one turn per TaskRun that had a pod, with its place
// in the lock order of w's PVC.
func turns(t *ptask, run string, trs []*taskRun, w string) []turn {
	if !bindsWS(t, w) {
		return nil
	}
	var out []turn
	for _, tr := range trs {
		if tr.pod == "" {
			continue
		}
		before, after := views(tr.logs[stepBefore]), views(tr.logs[stepAfter])
		seqs := lockTurns(tr.logs[stepBefore])
		tu := turn{task: t.name, instance: instanceOf(run, tr.name), subPaths: subPaths(t, w)}
		for _, b := range t.bindings {
			if b.pipelineWS == w {
				tu.pod = append(tu.pod, boundView{subPath: b.subPath, before: before[b.taskWS], after: after[b.taskWS]})
				if n := seqs[b.taskWS]; n > 0 {
					tu.seq = n
				}
			}
		}
		out = append(out, tu)
	}
	return out
}

// subPaths lists the subPaths through which a task binds pipeline workspace w.
func subPaths(t *ptask, w string) []string {
	var out []string
	for _, b := range t.bindings {
		if b.pipelineWS == w {
			out = append(out, b.subPath)
		}
	}
	return out
}

// taskDelta is what a task's views changed between its two observer steps
// (all its views, all its matrix instances): what the converted run shows
// it wrote, for the summary line.
func taskDelta(t *ptask, trs []*taskRun, w string) delta {
	d := delta{Set: tree{}}
	for _, tr := range trs {
		before, after := views(tr.logs[stepBefore]), views(tr.logs[stepAfter])
		for _, b := range t.bindings {
			if b.pipelineWS == w {
				d.merge(diffViews(b.subPath, before[b.taskWS], after[b.taskWS]))
			}
		}
	}
	return d
}

func (c *kase) compare(pvc, oci *runResult, tasks, order []*ptask, converted map[string]bool) (int, error) {
	diffs := 0
	problem := func(format string, a ...any) {
		diffs++
		fmt.Printf("  DIFF "+format+"\n", a...)
	}
	fmt.Printf("== case %s (namespace %s): PVC run %s in %s, converted run %s in %s\n", c.name, c.ns,
		pvc.status, c.wall["pvc"].Round(100*time.Millisecond), oci.status, c.wall[oci.kind].Round(100*time.Millisecond))

	// converted at all?
	anno := s(m(oci.obj, "metadata", "annotations"), convertedAnno)
	if c.fault == "webhook-down" || c.expectUnchanged != "" {
		// failurePolicy Ignore, or a run the webhook must leave on its PVC:
		// admitted unchanged, on its PVC, and it works as the reference run
		n, err := c.ownedPVCs(oci.uid)
		if err != nil {
			return 0, err
		}
		reason := s(m(oci.obj, "metadata", "annotations"), transform.AnnotationSkippedReason)
		what := "the webhook was down but the run was converted"
		if c.expectUnchanged != "" {
			what = "the run was converted, but the case expects it left unchanged (" + c.expectUnchanged + ")"
			if !strings.HasPrefix(reason, c.expectUnchanged+":") {
				problem("left-unchanged reason %q, want %s", reason, c.expectUnchanged)
			}
		}
		if anno != "" {
			problem("%s", what)
		}
		if n == 0 {
			problem("the unconverted run has no PVC")
		}
		if oci.status != pvc.status {
			problem("run status: PVC %s, unconverted labelled run %s", pvc.status, oci.status)
		}
		fmt.Printf("  admitted unchanged (converted annotation %q, reason %q), ran on %d PVC, ended %s\n", anno, reason, n, oci.status)
		return diffs, nil
	}
	if anno == "" {
		problem("the labelled run was not converted: annotations %v", m(oci.obj, "metadata", "annotations"))
	}
	producer, lost := strings.CutPrefix(c.fault, "registry-data-lost:")
	if p, ok := strings.CutPrefix(c.fault, "registry-evicted:"); ok {
		producer, lost = p, true // evicted: the same loss, the kubelet's doing
	}
	if lost {
		// the registry lost the run's data: a loud failure is the right outcome
		if c.faultFailed {
			return diffs, errors.New("the fault was not injected (see `fault:` above)")
		}
		for _, l := range dataLostProblems(pvc, oci, producer, tasks, converted) {
			problem("%s", l)
		}
		for _, t := range consumers(producer, tasks, converted) {
			for _, tr := range oci.taskRuns[t.name] {
				fmt.Printf("  registry data lost: consumer %s: %s\n", tr.name, pullSummary(tr))
			}
		}
		return diffs, nil
	}
	if full, ok := strings.CutPrefix(c.fault, "registry-full:"); ok {
		// the registry is full: the push must fail loudly, nothing corrupt be pulled
		for _, l := range fullProblems(pvc, oci, full, tasks) {
			problem("%s", l)
		}
		for _, pt := range slices.Sorted(maps.Keys(oci.taskRuns)) {
			for _, tr := range oci.taskRuns[pt] {
				for _, name := range slices.Sorted(maps.Keys(tr.logs)) {
					if strings.HasPrefix(name, "oci-transport-") {
						fmt.Printf("  registry full: %s %s (%s): %s\n", tr.name, name, tr.status, lastLine(tr.logs[name]))
					}
				}
			}
		}
		return diffs, nil
	}
	if pvc.status != oci.status {
		problem("run status: PVC %s, converted %s", pvc.status, oci.status)
	}
	if strings.Join(pvc.skipped, ",") != strings.Join(oci.skipped, ",") {
		problem("skipped tasks: PVC [%s], converted [%s]", strings.Join(pvc.skipped, ","), strings.Join(oci.skipped, ","))
	}
	// no PVC for the converted run, one for the PVC run
	ociPVCs, err := c.ownedPVCs(oci.uid)
	if err != nil {
		return 0, err
	}
	pvcPVCs, err := c.ownedPVCs(pvc.uid)
	if err != nil {
		return 0, err
	}
	if ociPVCs > 0 {
		problem("the converted run created %d PVC(s)", ociPVCs)
	}
	fmt.Printf("  PVCs: PVC run %d, converted run %d\n", pvcPVCs, ociPVCs)

	// the Task's labels and annotations on every TaskRun and pod, in both runs
	for _, rr := range []*runResult{pvc, oci} {
		for _, pt := range slices.Sorted(maps.Keys(c.taskMeta)) {
			for _, tr := range rr.taskRuns[pt] {
				for _, miss := range missingMeta(c.taskMeta[pt], tr.meta) {
					problem("%s run: TaskRun %s of %s: %s", rr.kind, tr.name, pt, miss)
				}
				for _, miss := range missingMeta(c.taskMeta[pt], tr.podMeta) {
					problem("%s run: pod %s of %s: %s", rr.kind, tr.pod, pt, miss)
				}
			}
		}
	}

	// artifacts in the registry
	pushSteps := map[string]map[string]bool{} // task -> its push steps' names
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(m(oci.obj, "spec", "pipelineSpec"), sect) {
			name := s(t.(obj), "name")
			pushSteps[name] = map[string]bool{}
			for _, st := range list(m(t, "taskSpec"), "steps") {
				pushSteps[name][s(st.(obj), "name")] = true
			}
		}
	}
	probed := false // the cross-namespace probe: on one repository
	for w := range converted {
		repo := fmt.Sprintf("%s/%s/%s/%s", repoPrefix, c.ns, oci.uid, transform.RepositoryComponent(w))
		var tags struct{ Tags []string }
		var err error
		if tags.Tags, err = registryTags(c.ns, repo); err != nil {
			problem("registry: %v", err)
		}
		fmt.Printf("  registry %s: tags [%s]\n", repo, strings.Join(tags.Tags, " "))
		if msg := otherNamespaceRefused(repo); msg != "" {
			problem("%s", msg)
		}
		if c.fault == "cross-namespace" && !probed {
			probed = true
			for _, p := range c.crossNamespaceProblems(oci, repo, transform.RepositoryComponent(w), tags.Tags) {
				problem("%s", p)
			}
		}
		for _, t := range tasks {
			ran := false
			for _, tr := range oci.taskRuns[t.name] {
				ran = ran || strings.HasPrefix(tr.status, "True")
			}
			// the push step of workspace w is named after its repository component
			if !pushSteps[t.name]["oci-transport-push-"+transform.RepositoryComponent(w)] || !ran || !bindsWS(t, w) {
				continue
			}
			found := false
			for _, tag := range tags.Tags {
				found = found || tag == t.name || strings.HasPrefix(tag, t.name+".")
			}
			if !found {
				problem("task %s pushed %s but the registry has no tag for it", t.name, w)
			}
		}
	}

	// an observer that failed printed a short view: nothing below can be trusted for that task
	for _, rr := range []*runResult{pvc, oci} {
		for _, line := range failedObservers(rr) {
			problem("%s", line)
		}
	}

	// The PVC run replayed in the order its TaskRuns took each workspace's
	// lock (model.go): each turn's change on top of what the turns before it
	// left.
	hist := map[string]history{} // workspace -> the PVC run's turns
	for w := range converted {
		var all []turn
		for _, t := range order {
			all = append(all, turns(t, pvc.kind, pvc.taskRuns[t.name], w)...)
		}
		hist[w] = replay(all)
		var seq []string
		for _, tu := range hist[w].turns {
			seq = append(seq, tu.instance)
		}
		fmt.Printf("  PVC lock order on %s: %s\n", w, strings.Join(seq, " "))
	}

	// task by task, in topological order
	fmt.Printf("  %-22s %-22s %-22s %s\n", "task", "PVC", "converted", "sees / writes")
	for _, t := range order {
		ps, os := statuses(pvc.taskRuns[t.name]), statuses(oci.taskRuns[t.name])
		var lines []string
		if ps != os {
			lines = append(lines, fmt.Sprintf("  task status: PVC %s, converted %s", ps, os))
		}
		pvcStatus := map[string]string{}
		for _, tr := range pvc.taskRuns[t.name] {
			pvcStatus[instanceOf(pvc.kind, tr.name)] = tr.status
		}
		anc := ancestors(t, tasks)
		seen, wrote := 0, 0
		for w := range converted {
			if !bindsWS(t, w) {
				continue
			}
			// what the ancestors left (every instance's change, in the
			// order it happened on the PVC), plus what the task's own pods
			// added before its steps on the PVC (sidecars)
			state := hist[w].stateOf(anc)
			own := hist[w].own(t.name, subPaths(t, w))
			od := taskDelta(t, oci.taskRuns[t.name], w)
			wrote += len(od.Set) + len(od.Deleted)
			for _, tr := range oci.taskRuns[t.name] {
				before, after := views(tr.logs[stepBefore]), views(tr.logs[stepAfter])
				inst := instanceOf(oci.kind, tr.name)
				// after its own steps: that plus what the same instance's
				// steps did on the PVC, relative to the PVC at its turn (a
				// sibling instance's deletion is not its change). Views,
				// not deltas: a directory a sibling happened to create
				// first on the PVC is still the same directory. Not for an
				// instance whose status already differs.
				steps, onPVC := hist[w].instance(t.name, inst)
				compareAfter := onPVC && pvcStatus[inst] == tr.status
				if !onPVC && strings.HasPrefix(tr.status, "True") {
					lines = append(lines, fmt.Sprintf("  %s: no TaskRun %s-%s in the PVC run to compare its writes with", tr.name, pvc.kind, inst))
				}
				for _, b := range t.bindings {
					if b.pipelineWS != w {
						continue
					}
					want, wantAfter := expect(state, own.withSteps(steps), b.subPath)
					if before[b.taskWS] == nil {
						continue // its before-observer never printed (failedObservers says if it failed)
					}
					seen += len(before[b.taskWS])
					for _, l := range diffLines(want, before[b.taskWS]) {
						lines = append(lines, fmt.Sprintf("  %s sees through %s (subPath %q): %s", tr.name, b.taskWS, b.subPath, strings.TrimSpace(l)))
					}
					if !compareAfter || after[b.taskWS] == nil { // its after-observer never ran (or failed: failedObservers)
						continue
					}
					for _, l := range diffLines(wantAfter, after[b.taskWS]) {
						lines = append(lines, fmt.Sprintf("  %s after its steps, through %s (subPath %q): %s", tr.name, b.taskWS, b.subPath, strings.TrimSpace(l)))
					}
				}
			}
		}
		verdict := "ok"
		if len(lines) > 0 {
			verdict = "DIFFERS"
		}
		fmt.Printf("  %-22s %-22s %-22s %d entries / %d changes  %s\n", t.name, ps, os, seen, wrote, verdict)
		for _, l := range lines {
			problem("%s: %s", t.name, strings.TrimSpace(l))
		}
		if c.verbose {
			for _, tr := range oci.taskRuns[t.name] {
				var steps []string
				for step := range tr.logs {
					steps = append(steps, step)
				}
				sort.Strings(steps)
				for _, step := range steps {
					log := tr.logs[step]
					if strings.HasPrefix(step, "oci-transport-pull") || strings.HasPrefix(step, "oci-transport-push") {
						for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
							fmt.Printf("      %s/%s: %s\n", t.name, step, l)
						}
					}
				}
			}
		}
	}
	return diffs, nil
}

func bindsWS(t *ptask, w string) bool {
	for _, b := range t.bindings {
		if b.pipelineWS == w {
			return true
		}
	}
	return false
}

// failedObservers names the observer steps of a run that ran and failed:
// their views are short (see observer), so a comparison would mislead.
func failedObservers(rr *runResult) []string {
	var out []string
	for task, trs := range rr.taskRuns {
		for _, tr := range trs {
			for _, step := range []string{stepBefore, stepAfter} {
				if st := tr.steps[step]; st.ran() && st.exitCode != 0 {
					out = append(out, fmt.Sprintf("%s: %s run: observer step %s of %s exited %d: its view is incomplete (its log says why)", task, rr.kind, step, tr.name, st.exitCode))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func statuses(trs []*taskRun) string {
	if len(trs) == 0 {
		return "not run"
	}
	var out []string
	for _, tr := range trs {
		out = append(out, tr.status)
	}
	sort.Strings(out)
	if len(out) > 1 && out[0] == out[len(out)-1] {
		return fmt.Sprintf("%dx %s", len(out), out[0])
	}
	return strings.Join(out, ",")
}

// ownedPVCs counts the case namespace's claims the run with this uid owns.
func (c *kase) ownedPVCs(uid string) (int, error) {
	var pvcs struct{ Items []obj }
	if err := kcJSON(&pvcs, "-n", c.ns, "get", "pvc"); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pvcs.Items {
		for _, ref := range list(m(p, "metadata"), "ownerReferences") {
			if s(ref.(obj), "uid") == uid {
				n++
			}
		}
	}
	return n, nil
}
