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
//
// Files by job: main.go (flags, the case), kube.go (kubectl, case files,
// accessors), observers.go (the steps the harness adds, the PVC lock, the
// stand-ins), model.go (what each task must see, and the pipeline's DAG),
// run.go (the two runs and what they printed), compare.go (the verdict),
// and one file per concern beside them (workspaces, metadata, storage,
// registry, locks, faults, retention, intruder, bundles).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

const (
	labelKey      = "oci-transport.tekton.dev/enabled"
	convertedAnno = "oci-transport.tekton.dev/converted-workspaces"
	// expectUnchangedAnno on a case's PipelineRun: the webhook must leave
	// it unchanged with this reason (a shape it cannot convert faithfully);
	// both runs then run on a PVC and must end alike.
	expectUnchangedAnno = "eq.tekton-oci-transport.dev/expect-unchanged"
	observerImage       = "local.test/busybox:1"
	stepBefore          = "eq-observe-before"
	stepAfter           = "eq-observe-after"
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
	flag.StringVar(&fault, "fault", "", "during the converted run: registry-restart:TASK (delete the registry pod when TASK's steps start; the steps must retry and the run succeed) or webhook-down (webhook scaled to zero: the labelled run must run unchanged on its PVC) or registry-data-lost:TASK (zot's pod, on its emptyDir, deleted once TASK succeeded: the consumer's pull must fail with exit 4, and a new run afterwards succeed) or retention (zot with short GC and retention intervals: an ended run's tags and blobs go, a run in flight keeps its own) or registry-full:TASK (zot's volume has no room for TASK's push: it must fail naming the registry's answer, the run fail, and the finally tasks pull what was there, whole) or cross-namespace (after the run, a pod in another namespace runs the injected pull and push against the run's repository with its own ServiceAccount token: both must be refused, the same pull in the run's namespace succeed, the tags stay) or registry-member-restart:TASK (zot on S3 with two members: the member owning the run's repository deleted when TASK's step work starts, back as a new pod of the same name; the run must be equivalent) or registry-evicted:TASK (TASK's push takes zot's emptyDir over its sizeLimit: the kubelet evicts zot, and the consumer's pull must fail with exit 4)")
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
	case c.expectUnchanged != "":
		return "left unchanged (" + c.expectUnchanged + "), the labelled run ended on its PVC as the reference run"
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
	// expectUnchanged: the reason the webhook must leave the labelled run
	// unchanged with (the run's annotation expectUnchangedAnno), or ""
	expectUnchanged string
	wall            map[string]time.Duration
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
