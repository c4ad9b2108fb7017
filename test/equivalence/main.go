// Command equivalence runs a PipelineRun twice on the test bed (test/cluster):
// once on its PVC (unlabelled) and once converted by the webhook (labelled),
// and checks that every task of the converted run saw exactly what its DAG
// ancestors left on the PVC, and wrote the same.
//
//	go run ./test/equivalence -f run.yaml [-f pipeline.yaml -f tasks.yaml ...]
//
// The files hold one PipelineRun and the Pipelines and Tasks it names (they
// are created in the case's namespace). Before submitting, every Task gets two
// observer steps, the same in both runs, that print each workspace binding's
// tree (path, type, mode, owner, size, sha256, symlink target) before and
// after the task's own steps.
//
// Determinism: the PVC run keeps the user's DAG (Tekton's own skip and
// failure semantics) and is serialized by a lock on each PVC that every
// TaskRun's before-observer takes and its after-observer gives back (observer,
// locks.go); it is replayed in the order the TaskRuns took it (model.go):
// each turn's change is what its pod showed on top of the state the turns
// before it left, in the order it happened: the kubelet's subPath
// directories, what appeared before its steps (its sidecars), what its steps
// did. The converted run is the user's. For each converted TaskRun the
// expected before-view is the initial (empty) workspace plus its ancestors'
// PVC changes, in lock order, plus what its own pod added before its steps,
// seen through the task's subPath; after its steps, that plus what the same
// instance's steps did on the PVC. What a parallel sibling wrote is a race on
// a PVC and is not compared. Both runs must end the same, the converted one
// must have created no PVC and left its artifacts in the registry.
//
// With -fault registry-data-lost:TASK the outcome is asserted instead of
// equivalence (faults.go): the converted run must fail loudly at the pull of
// TASK's consumer; then a new converted run must succeed and be equivalent.
// With -fault retention an ended converted run must be deleted by zot's
// retention while another is in flight (retention.go). With -fault
// registry-evicted:TASK (zot evicted for its emptyDir's sizeLimit) the
// outcome is registry-data-lost's; with -fault registry-full:TASK TASK's push
// must fail loudly and nothing partial be pulled (faults.go). With -fault
// cross-namespace a pod in another namespace must be refused the run's
// repository (intruder.go).
//
// Exit status: 0 equivalent, 1 a difference (printed per task), 2 an error.
// With -expect-diff the first two are swapped (the harness's own negative test).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"sigs.k8s.io/yaml"
)

const (
	labelKey      = "oci-transport.tekton.dev/enabled"
	convertedAnno = "oci-transport.tekton.dev/converted-workspaces"
	observerImage = "local.test/busybox:1"
	stepBefore    = "eq-observe-before"
	stepAfter     = "eq-observe-after"
)

type obj = map[string]any

// The registry is the chart's zot (test/cluster/lib.sh names it the same
// way): its namespace and pod labels here, its Service (also its
// Deployment's name) and port in registry.go, which reads it.
var (
	kubectl          = envOr("KUBECTL", "kubectl")
	registryNS       = envOr("REGISTRY_NS", "tekton-oci-transport")
	registrySelector = envOr("REGISTRY_SELECTOR", "app.kubernetes.io/instance=tekton-oci-transport,app.kubernetes.io/component=registry")
	repoPrefix       = envOr("REPOSITORY_PREFIX", "tekton-oci-transport")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(s string) error { *f = append(*f, s); return nil }

func main() {
	var (
		fs         files
		name       string
		timeout    time.Duration
		expectDiff bool
		keep       bool
		verbose    bool
		fault      string
		listTags   string
	)
	flag.Var(&fs, "f", "YAML file (repeatable): one PipelineRun, and the Pipelines and Tasks it names")
	flag.StringVar(&name, "name", "", "case name (default: the first file's base name)")
	flag.DurationVar(&timeout, "timeout", 6*time.Minute, "timeout of each run")
	flag.BoolVar(&expectDiff, "expect-diff", false, "succeed only if a difference is found (negative test)")
	flag.BoolVar(&keep, "keep", false, "keep the case's namespace")
	flag.BoolVar(&verbose, "v", false, "print the injected steps' log lines")
	flag.StringVar(&fault, "fault", "", "during the converted run: registry-restart:TASK (delete the registry pod when TASK's steps start; the steps must retry and the run succeed) or webhook-down (webhook scaled to zero: the labelled run must run unchanged on its PVC) or registry-data-lost:TASK (zot's pod, on its emptyDir, deleted once TASK succeeded: the consumer's pull must fail with exit 4, and a new run afterwards succeed) or retention (zot with short GC and retention intervals: an ended run's tags and blobs go, a run in flight keeps its own) or registry-full:TASK (zot's volume has no room for TASK's push: it must fail naming the registry's answer, the run fail, and the finally tasks pull what was there, whole) or cross-namespace (after the run, a pod in another namespace runs the injected pull and push against the run's repository with its own ServiceAccount token: both must be refused, the same pull in the run's namespace succeed, the tags stay) or registry-evicted:TASK (TASK's push takes zot's emptyDir over its sizeLimit: the kubelet evicts zot, and the consumer's pull must fail with exit 4)")
	var probe string
	flag.StringVar(&probe, "probe-other-namespace", "", "only run the cross-namespace probe against the converted PipelineRun NAMESPACE/NAME (its first converted workspace; intruder.go), print what happened, and exit 1 if another namespace was not refused (the demo uses it)")
	flag.StringVar(&listTags, "tags", "", "only print the tags of repository REPO (<prefix>/<namespace>/...), read as that namespace's runs may (registry.go), and exit")
	flag.Parse()
	if probe != "" {
		os.Exit(probeRun(probe))
	}
	if listTags != "" {
		tags, err := repoTags(listTags)
		if err != nil {
			fmt.Fprintln(os.Stderr, "equivalence -tags:", err)
			os.Exit(2)
		}
		fmt.Println(strings.Join(tags, " "))
		return
	}
	if len(fs) == 0 {
		fmt.Fprintln(os.Stderr, "usage: equivalence -f run.yaml [-f pipeline.yaml ...]")
		os.Exit(2)
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(fs[0]), filepath.Ext(fs[0]))
	}
	c := &kase{name: sanitize(name), timeout: timeout, keep: keep, verbose: verbose, fault: fault}
	if fault == "retention" {
		c.retention = &retentionFault{}
	}
	diffs, err := c.run(fs)
	switch {
	case err != nil:
		fmt.Printf("ERROR %s: %v\n", c.name, err)
		os.Exit(2)
	case expectDiff && diffs == 0:
		fmt.Printf("FAIL %s: expected the harness to find a difference, found none\n", c.name)
		os.Exit(1)
	case expectDiff:
		fmt.Printf("PASS %s: the harness found %d difference(s), as it must\n", c.name, diffs)
	case diffs > 0:
		fmt.Printf("FAIL %s: %d difference(s)\n", c.name, diffs)
		os.Exit(1)
	default:
		fmt.Printf("PASS %s: %s (PVC %s, converted %s)\n", c.name, c.verdict(), c.wall["pvc"].Round(100*time.Millisecond), c.wall["oci"].Round(100*time.Millisecond))
	}
}

// verdict says what a passing case showed: equivalence, or for a fault
// whose outcome is asserted instead, that outcome.
func (c *kase) verdict() string {
	switch {
	case strings.HasPrefix(c.fault, "registry-data-lost:"):
		return "the converted run failed loudly where its data went missing (pull exit 4), and a new run afterwards is equivalent"
	case strings.HasPrefix(c.fault, "registry-evicted:"):
		return "zot was evicted and the converted run failed loudly where its data went missing (pull exit 4)"
	case strings.HasPrefix(c.fault, "registry-full:"):
		return "the push that did not fit failed loudly, the converted run failed, the finally task pulled what was there whole"
	case c.fault == "webhook-down":
		return "admitted unchanged, the labelled run succeeded on its PVC"
	case c.fault == "cross-namespace":
		return "equivalent, and a pod in another namespace was refused pull and push on the run's repository (one in the run's namespace pulled)"
	case c.fault == "retention":
		return "equivalent while zot's GC ran, and the ended run's tags and blobs were reclaimed"
	}
	return "equivalent"
}

func sanitize(s string) string {
	s = strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9-]+`).ReplaceAllString(s, "-"))
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.Trim(s, "-")
}

type kase struct {
	name    string
	ns      string
	timeout time.Duration
	keep    bool
	verbose bool
	fault   string
	wall    map[string]time.Duration
	// faultFailed: the fault could not be injected (registry-data-lost), so
	// the outcome it asserts says nothing
	faultFailed bool
	// retention: -fault retention's bookkeeping (retention.go)
	retention *retentionFault
	// lockRoots: the PVC run's claims -> their directories on this machine (locks.go)
	lockRoots map[string]string
	// taskMeta: per pipeline task with a taskRef to a supplied Task, what
	// its TaskRuns and pods must carry of the Task's metadata (metadata.go)
	taskMeta map[string]objectMeta
	// remote: the case's bundles and objects of other namespaces (bundles.go)
	remote *remoteSources
}

// ---- kubectl

func kc(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command(kubectl, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func kcJSON(v any, args ...string) error {
	out, err := kc(nil, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, v)
}

// ---- reading and preparing the objects

func readDocs(paths []string) ([]obj, error) {
	var docs []obj
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			var o obj
			if err := yaml.Unmarshal([]byte(part), &o); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if len(o) > 0 {
				docs = append(docs, o)
			}
		}
	}
	return docs, nil
}

func m(o any, keys ...string) obj {
	cur, _ := o.(obj)
	for _, k := range keys {
		cur, _ = cur[k].(obj)
	}
	return cur
}

func s(o obj, k string) string { v, _ := o[k].(string); return v }

func list(o obj, k string) []any { v, _ := o[k].([]any); return v }

// observer is a step that prints every declared workspace's tree. pipefail:
// a find or stat that fails (a path too long, a vanished entry) fails the
// step, so a view is never silently short (compare reports a failed observer).
//
// In the PVC run it also serializes the task on the workspaces' PVCs
// without changing the DAG: each task workspace X has an optional twin
// eq-lock-X, which only the PVC run binds (the PVC's root, whatever X's
// subPath). The before-observer takes the lock of each PVC (in claim-name
// order, once per claim) before printing, and prints its turn (EQ-LOCK X n,
// a counter kept under the lock); the after-observer prints, then gives the
// locks back. Unbound (the converted run), nothing of it runs. The lock is
// a symlink, created atomically with its holder's identity (TaskRun/pod);
// a holder whose steps failed never reaches its after-observer: the harness
// frees its lock once its TaskRun has ended (releaseDeadLocks), and a retry
// of the same TaskRun takes over the lock of its dead earlier attempt.
// Views never show the bookkeeping directory lockDir.
func observer(name string, workspaces []string) obj {
	var b strings.Builder
	b.WriteString("#!/bin/sh\nset -e -o pipefail\n")
	// the locks: "claim taskWS dir" lines, sorted (the same order in every pod)
	b.WriteString("eq_locks() {\n:\n")
	for _, w := range workspaces {
		l := lockWorkspace(w)
		fmt.Fprintf(&b, "if [ \"$(workspaces.%[1]s.bound)\" = true ]; then echo \"$(workspaces.%[1]s.claim) %[2]s $(workspaces.%[1]s.path)\"; fi\n", l, w)
	}
	b.WriteString("}\neq_me=\"$(context.taskRun.name)/$(hostname)\"\n")
	if name == stepBefore {
		fmt.Fprintf(&b, `eq_locks | sort | while read -r claim tws dir; do
  if [ "$claim" != "${prev:-}" ]; then
    prev=$claim; d="$dir/%[1]s"
    mkdir -p -m 777 "$d"
    until ln -sn "$eq_me" "$d/lock" 2>/dev/null; do
      h=$(readlink "$d/lock") || continue
      case "$h" in "$(context.taskRun.name)/"*) rm -f "$d/lock"; echo "EQ-LOCK-TAKEOVER $tws $h";; esac
      sleep 0.2
    done
    n=$(cat "$d/seq" 2>/dev/null || echo 0); n=$((n + 1))
    echo "$n" > "$d/seq.$$" && mv -f "$d/seq.$$" "$d/seq"
  fi
  echo "EQ-LOCK $tws $n"
done
`, lockDir)
	}
	for _, w := range workspaces {
		fmt.Fprintf(&b, "echo 'EQ-VIEW %s'\n", w)
		fmt.Fprintf(&b, "cd \"$(workspaces.%s.path)\"\n", w)
		// An observer runs as the step next to it does (observeWorkspaces):
		// what that user cannot read is printed as such ("noread"), the same
		// in both runs; find's only tolerated complaint is about those.
		fmt.Fprintf(&b, `find . -mindepth 1 -path ./%[2]s -prune -o -print 2>/dev/null | sort | while IFS= read -r p; do
  o=$(stat -c %%u:%%g "$p"); md=$(stat -c %%a "$p")
  if [ -L "$p" ]; then echo "EQ|%[1]s|$p|symlink|777|$o|0|-|$(readlink "$p")"
  elif [ -d "$p" ]; then if [ -r "$p" ] && [ -x "$p" ]; then r=-; else r=noread; fi; echo "EQ|%[1]s|$p|dir|$md|$o|0|$r|"
  elif [ -f "$p" ]; then if [ -r "$p" ]; then r=$(sha256sum < "$p" | cut -d' ' -f1); else r=noread; fi; echo "EQ|%[1]s|$p|file|$md|$o|$(stat -c %%s "$p")|$r|"
  else echo "EQ|%[1]s|$p|other|$md|$o|0|-|"; fi
done
if eq_err=$(find . -mindepth 1 -path ./%[2]s -prune -o -print 2>&1 >/dev/null); then :; fi
eq_bad=$(printf '%%s\n' "$eq_err" | grep -v ': Permission denied$' | grep . || true)
if [ -n "$eq_bad" ]; then echo "$eq_bad" >&2; exit 1; fi
`, w, lockDir)
	}
	if name == stepAfter {
		fmt.Fprintf(&b, `eq_locks | sort | while read -r claim tws dir; do
  [ "$claim" = "${prev:-}" ] && continue
  prev=$claim; d="$dir/%[1]s"
  h=$(readlink "$d/lock" 2>/dev/null || true)
  if [ "$h" != "$eq_me" ]; then echo "EQ-LOCK-LOST $tws: held by '$h', not $eq_me" >&2; exit 1; fi
  rm "$d/lock"
done
`, lockDir)
	}
	return obj{"name": name, "image": observerImage, "script": b.String()}
}

// lockDir is the PVC run's bookkeeping directory at the root of each PVC:
// lock (a symlink to its holder) and seq (the last turn given).
const lockDir = ".eq-pvc"

// lockWorkspace is the name of the optional task workspace that the PVC run
// binds to the root of w's PVC, for the lock.
func lockWorkspace(w string) string { return "eq-lock-" + w }

// observe adds the two observer steps to a Task spec, for the workspaces it
// declares.
func observe(spec obj) {
	var ws []string
	for _, w := range list(spec, "workspaces") {
		ws = append(ws, s(w.(obj), "name"))
	}
	observeWorkspaces(spec, ws)
}

// observeWorkspaces adds the two observer steps for the task workspaces ws
// (an embedded spec's pod may have more than it declares: podWorkspaces),
// and declares their optional lock workspaces.
func observeWorkspaces(spec obj, ws []string) {
	if len(ws) == 0 {
		return
	}
	decl := list(spec, "workspaces")
	for _, w := range ws {
		decl = append(decl, obj{"name": lockWorkspace(w), "optional": true})
	}
	spec["workspaces"] = decl
	user := list(spec, "steps")
	before, after := observer(stepBefore, ws), observer(stepAfter, ws)
	steps := []any{before}
	steps = append(steps, user...)
	steps = append(steps, after)
	if len(user) > 0 {
		first, last := user[0].(obj), user[len(user)-1].(obj)
		strongest := mostPrivileged(user, m(spec, "stepTemplate"))
		runAs(before, strongest)
		runAs(after, strongest)
		if !sameContext(strongest, first) {
			steps = append([]any{standIn(stepHead, first)}, steps...)
		}
		if !sameContext(strongest, last) {
			steps = append(steps, standIn(stepTail, last))
		}
	}
	spec["steps"] = steps
}

// The observers read the views as the task's most privileged step runs (a
// view is complete when a task's steps run as several users: root made a
// 0700 directory, a non-root step built next to it). The webhook chooses
// the injected steps' user from the task's first and last steps and from
// whether any step runs as root (design.md, "Users and groups"), so when
// the observers' user is not the first or last step's, a stand-in step with
// that step's securityContext comes first or last: the first and last
// steps, and the set of contexts the steps run with, are the user's, and the
// webhook decides as it would without the harness. (Root observers used to
// decide for it: on the test bed the injected steps ran as root whatever
// the task.) Under Pod Security "restricted" every step runs as one user, no
// stand-in is needed, and the observers pass admission as the steps do.
const (
	stepHead = "eq-first-step-user"
	stepTail = "eq-last-step-user"
)

// mostPrivileged is the first step that runs as root (runAsUser 0, its own
// or the stepTemplate's), else the first whose user is the image's (no
// runAsUser: the observer image's is root), else the last step.
func mostPrivileged(steps []any, stepTemplate obj) obj {
	uid := func(st obj) (int64, bool) {
		for _, sc := range []obj{m(st, "securityContext"), m(stepTemplate, "securityContext")} {
			if v, ok := sc["runAsUser"].(float64); ok {
				return int64(v), true
			}
		}
		return 0, false
	}
	var unset obj
	for _, st := range steps {
		u, set := uid(st.(obj))
		if set && u == 0 {
			return st.(obj)
		}
		if !set && unset == nil {
			unset = st.(obj)
		}
	}
	if unset != nil {
		return unset
	}
	return steps[len(steps)-1].(obj)
}

func sameContext(a, b obj) bool {
	x, _ := json.Marshal(a["securityContext"])
	y, _ := json.Marshal(b["securityContext"])
	return bytes.Equal(x, y)
}

// standIn is a step that does nothing, as the user's step does.
func standIn(name string, as obj) obj {
	st := obj{"name": name, "image": observerImage, "script": "#!/bin/sh\ntrue\n"}
	runAs(st, as)
	return st
}

// runAs gives a harness step the securityContext of a user's step (none
// when the step has none: the Task's stepTemplate then applies to both
// alike).
func runAs(o, step obj) {
	sc, ok := step["securityContext"].(obj)
	if !ok {
		return
	}
	b, _ := json.Marshal(sc)
	var cp obj
	_ = json.Unmarshal(b, &cp)
	o["securityContext"] = cp
}

// lockBindings binds, in the PVC run's twin of a pipeline spec, each task's
// lock workspaces to the root of the converted workspaces it binds (tasks and
// finally tasks; a matrix task's instances each take the lock). Nothing else
// changes: the DAG, and so Tekton's skip semantics, stay the user's.
func lockBindings(ps obj, tasks []*ptask, converted map[string]bool) obj {
	b, _ := json.Marshal(ps)
	var cp obj
	_ = json.Unmarshal(b, &cp)
	byName := map[string]*ptask{}
	for _, t := range tasks {
		byName[t.name] = t
	}
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(cp, sect) {
			t := t.(obj)
			pt := byName[s(t, "name")]
			if pt == nil {
				continue
			}
			ws := list(t, "workspaces")
			seen := map[string]bool{}
			for _, bd := range pt.bindings {
				if converted[bd.pipelineWS] && !seen[bd.taskWS] {
					seen[bd.taskWS] = true
					ws = append(ws, obj{"name": lockWorkspace(bd.taskWS), "workspace": bd.pipelineWS})
				}
			}
			if len(ws) > 0 {
				t["workspaces"] = ws
			}
		}
	}
	return cp
}

// ptask is what the harness knows of one pipeline task.
type ptask struct {
	name     string
	finally  bool
	deps     []string
	bindings []binding
	matrix   bool
}

type binding struct {
	taskWS, pipelineWS, subPath string
}

var depRE = regexp.MustCompile(`\$\(tasks\.([a-z0-9][a-z0-9-]*)\.`)

func pipelineTasks(spec obj, params map[string]string) []*ptask {
	var out []*ptask
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(spec, sect) {
			t := t.(obj)
			pt := &ptask{name: s(t, "name"), finally: sect == "finally", matrix: t["matrix"] != nil}
			for _, r := range list(t, "runAfter") {
				pt.deps = append(pt.deps, r.(string))
			}
			for _, k := range []string{"params", "when", "matrix"} {
				b, _ := json.Marshal(t[k])
				for _, mm := range depRE.FindAllStringSubmatch(string(b), -1) {
					pt.deps = append(pt.deps, mm[1])
				}
			}
			for _, b := range append(explicitBindings(t), propagatedBindings(t)...) {
				b.subPath = substitute(b.subPath, params)
				pt.bindings = append(pt.bindings, b)
			}
			out = append(out, pt)
		}
	}
	return out
}

var paramRE = regexp.MustCompile(`\$\(params\.([A-Za-z0-9_.-]+)\)`)

func substitute(v string, params map[string]string) string {
	return paramRE.ReplaceAllStringFunc(v, func(x string) string {
		if p, ok := params[paramRE.FindStringSubmatch(x)[1]]; ok {
			return p
		}
		return x
	})
}

// topo orders the non-finally tasks (Kahn, ties by declaration order), then finally.
func topo(ts []*ptask) []*ptask {
	done := map[string]bool{}
	var out []*ptask
	for len(out) < len(ts) {
		progress := false
		for _, t := range ts {
			if done[t.name] {
				continue
			}
			ready := true
			for _, d := range t.deps {
				if !done[d] {
					ready = false
				}
			}
			if t.finally {
				for _, u := range ts {
					if !u.finally && !done[u.name] {
						ready = false
					}
				}
			}
			if ready {
				done[t.name] = true
				out = append(out, t)
				progress = true
				break
			}
		}
		if !progress {
			break
		}
	}
	return out
}

func ancestors(t *ptask, all []*ptask) map[string]bool {
	byName := map[string]*ptask{}
	for _, u := range all {
		byName[u.name] = u
	}
	anc := map[string]bool{}
	if t.finally {
		for _, u := range all {
			if !u.finally {
				anc[u.name] = true
			}
		}
		return anc
	}
	var walk func(string)
	walk = func(n string) {
		for _, d := range byName[n].deps {
			if !anc[d] {
				anc[d] = true
				walk(d)
			}
		}
	}
	walk(t.name)
	return anc
}

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
	if c.fault == "webhook-down" {
		// failurePolicy Ignore: admitted unchanged, on its PVC, and it works
		var pvcs struct{ Items []obj }
		if err := kcJSON(&pvcs, "-n", c.ns, "get", "pvc"); err != nil {
			return 0, err
		}
		n := 0
		for _, p := range pvcs.Items {
			for _, ref := range list(m(p, "metadata"), "ownerReferences") {
				if s(ref.(obj), "uid") == oci.uid {
					n++
				}
			}
		}
		if anno != "" {
			problem("the webhook was down but the run was converted")
		}
		if n == 0 {
			problem("the unconverted run has no PVC")
		}
		if !strings.HasPrefix(oci.status, "True") {
			problem("the unconverted labelled run did not succeed: %s", oci.status)
		}
		fmt.Printf("  webhook down: the labelled run was admitted unchanged (converted annotation %q), ran on %d PVC, ended %s\n", anno, n, oci.status)
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
	var pvcs struct{ Items []obj }
	if err := kcJSON(&pvcs, "-n", c.ns, "get", "pvc"); err != nil {
		return 0, err
	}
	owned := map[string]int{}
	for _, p := range pvcs.Items {
		for _, ref := range list(m(p, "metadata"), "ownerReferences") {
			owned[s(ref.(obj), "uid")]++
		}
	}
	if owned[oci.uid] > 0 {
		problem("the converted run created %d PVC(s)", owned[oci.uid])
	}
	fmt.Printf("  PVCs: PVC run %d, converted run %d\n", owned[pvc.uid], owned[oci.uid])

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
