package main

// Running a case: the PVC run and the converted run, and collecting what their TaskRuns and observers printed.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// ---- running

func (c *kase) run(paths []string) (int, error) {
	docs, err := readDocs(paths)
	if err != nil {
		return 0, err
	}
	var run obj
	pipelines := map[string]obj{}
	taskDocs := map[string]obj{}
	var others []obj
	var nsMeta obj // a Namespace in the files: its labels and annotations go on the case's namespace
	for _, d := range docs {
		switch s(d, "kind") {
		case "Namespace":
			nsMeta = m(d, "metadata")
		case "PipelineRun":
			if run != nil {
				return 0, errors.New("more than one PipelineRun")
			}
			run = d
		case "Pipeline":
			pipelines[s(m(d, "metadata"), "name")] = d
			others = append(others, d)
		case "Task":
			observe(m(d, "spec"))
			taskDocs[s(m(d, "metadata"), "name")] = d
			others = append(others, d)
		default:
			others = append(others, d)
		}
	}
	if run == nil {
		return 0, errors.New("no PipelineRun in the files")
	}
	c.expectUnchanged = s(m(run, "metadata", "annotations"), expectUnchangedAnno)
	var pspec obj
	if ps := m(run, "spec", "pipelineSpec"); ps != nil {
		pspec = ps
	} else if ref := s(m(run, "spec", "pipelineRef"), "name"); ref != "" && pipelines[ref] != nil {
		pspec = m(pipelines[ref], "spec")
	} else {
		return 0, errors.New("the run needs a pipelineSpec or a pipelineRef to a Pipeline given with -f")
	}
	runWorkspaces := map[string]bool{}
	for _, w := range list(m(run, "spec"), "workspaces") {
		runWorkspaces[s(w.(obj), "name")] = true
	}
	params := map[string]string{}
	for _, p := range list(pspec, "params") {
		if d, ok := p.(obj)["default"].(string); ok {
			params[s(p.(obj), "name")] = d
		}
	}
	for _, p := range list(m(run, "spec"), "params") {
		if v, ok := p.(obj)["value"].(string); ok {
			params[s(p.(obj), "name")] = v
		}
	}
	converted := map[string]bool{}
	for _, w := range list(m(run, "spec"), "workspaces") {
		if w.(obj)["volumeClaimTemplate"] != nil {
			converted[s(w.(obj), "name")] = true
		}
	}
	c.taskMeta = taskMetadata(pspec, taskDocs)
	tasks := pipelineTasks(pspec, params)
	order := topo(tasks)
	if len(order) != len(tasks) {
		return 0, errors.New("cannot order the pipeline's tasks (a cycle or an unknown runAfter)")
	}
	// the observers, once the tasks are known (their lock workspaces are the
	// harness's, not the user's)
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(pspec, sect) {
			if ts := m(t, "taskSpec"); ts != nil {
				observeWorkspaces(ts, podWorkspaces(t.(obj), runWorkspaces))
			}
		}
	}

	// the namespace of the case, fresh
	c.ns = "eq-" + c.name
	_, _ = kc(nil, "delete", "namespace", c.ns, "--ignore-not-found", "--wait=true", "--timeout=120s")
	if _, err := kc(nil, "create", "namespace", c.ns); err != nil {
		return 0, err
	}
	if !c.keep {
		defer func() { _, _ = kc(nil, "delete", "namespace", c.ns, "--wait=false") }()
		defer c.dropLocalVolumes()
		defer c.dropRemote()
	}
	for _, k := range []string{"labels", "annotations"} {
		kv, _ := nsMeta[k].(obj)
		if len(kv) == 0 {
			continue
		}
		args := []string{strings.TrimSuffix(k, "s"), "namespace", c.ns, "--overwrite"}
		for _, key := range slices.Sorted(maps.Keys(kv)) {
			args = append(args, fmt.Sprintf("%s=%v", key, kv[key]))
		}
		if _, err := kc(nil, args...); err != nil {
			return 0, err
		}
	}
	// Tasks for Tekton's resolvers: bundles pushed, other namespaces' objects
	// created there (bundles.go)
	if others, err = c.placeRemote(run, others); err != nil {
		return 0, err
	}
	for _, o := range others {
		m(o, "metadata")["namespace"] = c.ns
	}
	// the PVC run's twin of the Pipeline: the same DAG, with the lock
	// workspaces bound (observer)
	twin := func(ps obj) obj { return lockBindings(ps, tasks, converted) }
	runs := map[string]obj{}
	kinds := c.runKinds()
	for _, kind := range kinds {
		b, _ := json.Marshal(run)
		var r obj
		_ = json.Unmarshal(b, &r)
		md := m(r, "metadata")
		delete(md, "generateName")
		md["name"] = kind
		md["namespace"] = c.ns
		labels, _ := md["labels"].(obj)
		if labels == nil {
			labels = obj{}
		}
		if kind == "pvc" {
			labels[labelKey] = "false"
			if err := c.localClaims(r); err != nil {
				return 0, err
			}
			if ps := m(r, "spec", "pipelineSpec"); ps != nil {
				m(r, "spec")["pipelineSpec"] = twin(ps)
			} else {
				name := s(m(r, "spec", "pipelineRef"), "name")
				sp, _ := json.Marshal(pipelines[name])
				var locked obj
				_ = json.Unmarshal(sp, &locked)
				m(locked, "metadata")["name"] = name + "-pvc"
				m(locked, "metadata")["namespace"] = c.ns
				locked["spec"] = twin(m(locked, "spec"))
				others = append(others, locked)
				m(r, "spec", "pipelineRef")["name"] = name + "-pvc"
			}
		} else {
			labels[labelKey] = "true"
		}
		md["labels"] = labels
		runs[kind] = r
	}
	for _, o := range others {
		b, _ := json.Marshal(o)
		if _, err := kc(b, "apply", "-f", "-"); err != nil {
			return 0, err
		}
	}

	c.wall = map[string]time.Duration{}
	results := map[string]*runResult{}
	for _, kind := range kinds {
		b, _ := json.Marshal(runs[kind])
		if kind == "oci" && c.fault == "webhook-down" {
			if err := scaleWebhook(0); err != nil {
				return 0, err
			}
		}
		start := time.Now()
		if _, err := kc(b, "create", "-f", "-"); err != nil {
			return 0, err
		}
		faultDone, stop := make(chan string, 1), make(chan struct{})
		if task, ok := strings.CutPrefix(c.fault, "registry-restart:"); ok && kind == "oci" {
			go func() { faultDone <- c.restartRegistryWhen(task) }()
		} else if task, ok := strings.CutPrefix(c.fault, "registry-data-lost:"); ok && kind == "oci" {
			go func() { faultDone <- c.loseRegistryWhen(task, tasks, converted, stop) }()
		} else if task, ok := strings.CutPrefix(c.fault, "registry-member-restart:"); ok && kind == "oci" {
			go func() { faultDone <- c.restartRegistryMemberWhen(task, converted, stop) }()
		} else if task, ok := strings.CutPrefix(c.fault, "registry-evicted:"); ok && kind == "oci" {
			go func() { faultDone <- c.watchEviction(task, stop) }()
		} else if c.retention != nil && kind == "oci" {
			go func() { faultDone <- c.retention.watch(stop) }()
		} else {
			faultDone <- ""
		}
		rr, err := c.wait(kind)
		close(stop)
		if err != nil {
			return 0, err
		}
		if msg := <-faultDone; msg != "" {
			fmt.Println("  fault:", msg)
		}
		if kind == "oci" && c.fault == "webhook-down" {
			if err := scaleWebhook(1); err != nil {
				return 0, err
			}
		}
		c.wall[kind] = time.Since(start)
		if err := c.collect(rr); err != nil {
			return 0, err
		}
		results[kind] = rr
		if kind == "oci-old" {
			if err := c.retention.afterOld(rr, converted); err != nil {
				return 0, err
			}
		}
	}
	diffs, err := c.compare(results["pvc"], results["oci"], tasks, order, converted)
	if err != nil {
		return diffs, err
	}
	diffs += c.checkSources(pspec, results["oci"])
	if c.retention != nil {
		for _, l := range c.retention.problems(results["oci"], converted) {
			diffs++
			fmt.Printf("  DIFF %s\n", l)
		}
	}
	if again := results["oci-again"]; again != nil {
		// the registry is back: a new converted run must work, and be
		// equivalent, as if nothing had happened
		fmt.Printf("  == a new converted run after the registry lost its data:\n")
		fault := c.fault
		c.fault = "" // no fault in this run: the whole comparison
		d, err := c.compare(results["pvc"], again, tasks, order, converted)
		c.fault = fault
		diffs += d
		if err != nil {
			return diffs, err
		}
	}
	return diffs, nil
}

// runKinds are the runs of the case, in the order they run, each a
// PipelineRun of that name: the PVC run and the converted one, and for some
// faults another converted run before them (retention: one that has ended
// and must be deleted while "oci" is in flight) or after them
// (registry-data-lost: once the registry is back, a new run must work).
func (c *kase) runKinds() []string {
	switch {
	case strings.HasPrefix(c.fault, "registry-data-lost:"):
		return []string{"pvc", "oci", "oci-again"}
	case c.retention != nil:
		return []string{"oci-old", "pvc", "oci"}
	}
	return []string{"pvc", "oci"}
}

type taskRun struct {
	name, pod, status string
	meta, podMeta     objectMeta           // labels and annotations of the TaskRun and its pod
	logs              map[string]string    // step name -> log
	steps             map[string]stepState // step name -> how it ended
}

// stepState is how a step ended (TaskRun status.steps[]).
type stepState struct {
	terminated bool
	exitCode   int
	reason     string // terminationReason: Completed, Error, Skipped (a step before failed), ...
}

// ran says whether the step itself ran, as far as the TaskRun tells.
func (st stepState) ran() bool { return st.terminated && st.reason != "Skipped" }

type runResult struct {
	kind     string
	obj      obj
	uid      string
	status   string
	skipped  []string
	taskRuns map[string][]*taskRun // pipeline task -> TaskRuns (matrix: several)
}

func (c *kase) wait(kind string) (*runResult, error) {
	deadline := time.Now().Add(c.timeout)
	for {
		var pr obj
		if err := kcJSON(&pr, "-n", c.ns, "get", "pipelinerun", kind); err != nil {
			return nil, err
		}
		for _, cond := range list(m(pr, "status"), "conditions") {
			cond := cond.(obj)
			if s(cond, "type") == "Succeeded" && s(cond, "status") != "Unknown" {
				rr := &runResult{kind: kind, obj: pr, uid: s(m(pr, "metadata"), "uid"), status: s(cond, "status") + "/" + s(cond, "reason")}
				for _, st := range list(m(pr, "status"), "skippedTasks") {
					rr.skipped = append(rr.skipped, s(st.(obj), "name"))
				}
				sort.Strings(rr.skipped)
				return rr, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("run %s/%s not finished after %s", c.ns, kind, c.timeout)
		}
		if kind == "pvc" {
			c.releaseDeadLocks(s(m(pr, "metadata"), "uid"))
		}
		time.Sleep(2 * time.Second)
	}
}

func (c *kase) collect(rr *runResult) error {
	var trs struct{ Items []obj }
	if err := kcJSON(&trs, "-n", c.ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun="+rr.kind); err != nil {
		return err
	}
	rr.taskRuns = map[string][]*taskRun{}
	for _, tr := range trs.Items {
		pt := s(m(tr, "metadata", "labels"), "tekton.dev/pipelineTask")
		t := &taskRun{name: s(m(tr, "metadata"), "name"), pod: s(m(tr, "status"), "podName"), logs: map[string]string{}, steps: map[string]stepState{}, meta: metaOf(tr)}
		if t.pod != "" {
			var pod obj
			if err := kcJSON(&pod, "-n", c.ns, "get", "pod", t.pod); err != nil {
				return err
			}
			t.podMeta = metaOf(pod)
		}
		for _, cond := range list(m(tr, "status"), "conditions") {
			if s(cond.(obj), "type") == "Succeeded" {
				t.status = s(cond.(obj), "status") + "/" + s(cond.(obj), "reason")
			}
		}
		for _, st := range list(m(tr, "status"), "steps") {
			if term := m(st, "terminated"); term != nil {
				code, _ := term["exitCode"].(float64)
				t.steps[s(st.(obj), "name")] = stepState{terminated: true, exitCode: int(code), reason: s(st.(obj), "terminationReason")}
			}
			cn := s(st.(obj), "container")
			if t.pod == "" || cn == "" {
				continue
			}
			out, err := kc(nil, "-n", c.ns, "logs", t.pod, "-c", cn)
			if err != nil {
				return err
			}
			t.logs[strings.TrimPrefix(cn, "step-")] = string(out)
		}
		rr.taskRuns[pt] = append(rr.taskRuns[pt], t)
	}
	for _, l := range rr.taskRuns {
		sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
	}
	return nil
}
