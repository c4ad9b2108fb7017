package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The verdicts of `webhook report`: the audit annotation's two, and what
// the report alone can say.
const (
	verdictWouldConvert = webhook.AuditWouldConvert
	verdictWouldLeave   = webhook.AuditWouldLeaveUnchanged
	// verdictNeedsRemote: only a remote resolver can tell (--no-remote, or
	// a remote reference no supplied file answers).
	verdictNeedsRemote = "needs-remote-resolution"
	// verdictAlready: the run is our own output without its marker.
	verdictAlready = "already-converted"
	// verdictError: the evaluation itself failed (the webhook would admit
	// the run unchanged, fail-open).
	verdictError = "error"
)

// verdictOrder is the order of the summary's rows.
var verdictOrder = []string{verdictWouldConvert, verdictWouldLeave, verdictNeedsRemote, verdictAlready, verdictError}

// progressInterval is how often a long scan prints a progress line on
// stderr (tests shorten it).
var progressInterval = 2 * time.Second

// reportFlags are report's settings.
type reportFlags struct {
	files         stringList
	kubeconfig    string
	namespace     string
	allNamespaces bool
	output        choice
	noRemote      bool
	labelKey      string
	timeout       time.Duration
	concurrency   int
	ignorePolicy  bool
	options       func() transform.Options
}

// runReport says, for every PipelineRun and TriggerTemplate PipelineRun that
// binds a volumeClaimTemplate, what the webhook would do with it, what it
// requests, and the PVC storage conversion would stop requesting.
func runReport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f reportFlags
	fs := flag.NewFlagSet("webhook report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&f.files, "f", "read these YAML or JSON files instead of a cluster (repeatable; - reads stdin): PipelineRuns, TriggerTemplates, the Pipelines and Tasks they reference, PVCs, Namespaces, and Lists of them (kubectl get -o yaml)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster config)")
	fs.StringVar(&f.namespace, "namespace", "", "namespaces to read, comma-separated (default: the kubeconfig context's); with -f, the namespace of objects without one (default \"default\")")
	fs.StringVar(&f.namespace, "n", "", "short for --namespace")
	fs.BoolVar(&f.allNamespaces, "all-namespaces", false, "read every namespace")
	fs.BoolVar(&f.allNamespaces, "A", false, "short for --all-namespaces")
	f.output = choice{value: "table", allowed: []string{"table", "json"}}
	fs.Var(&f.output, "o", "output format: table or json")
	fs.BoolVar(&f.noRemote, "no-remote", false, "never create ResolutionRequests (with -f: never read a remote reference from the files); a run that needs one is reported needs-remote-resolution")
	fs.StringVar(&f.labelKey, "label-key", transform.EnabledLabel, "the webhook's --label-key: the opt-in each run would get is read from it")
	fs.DurationVar(&f.timeout, "resolution-timeout", registration.DefaultResolutionTimeout, "deadline for resolving one run's references, as the webhook's --resolution-timeout")
	fs.IntVar(&f.concurrency, "concurrency", 4, "runs evaluated at once")
	fs.BoolVar(&f.ignorePolicy, "ignore-verification-policies", false, "as the webhook's flag: do not leave runs unchanged in namespaces with a VerificationPolicy")
	f.options = transformFlags(fs)
	fs.Usage = usage(fs, stderr,
		"usage: webhook report [-n namespace[,namespace] | -A] [--kubeconfig file] [-o table|json] [--no-remote] [flags]",
		"       webhook report -f dump.yaml [-f pipelines.yaml ...] [-o table|json] [--no-remote] [flags]",
		"For every PipelineRun and TriggerTemplate PipelineRun that binds a volumeClaimTemplate: what the",
		"webhook would do with it (would-convert, would-leave-unchanged and why, needs-remote-resolution), what",
		"each task would pull and push, the PVC storage it requests, the PVCs finished runs still hold, and a",
		"summary. It resolves as the webhook does; from a cluster it creates (and deletes) ResolutionRequests",
		"unless --no-remote, and writes nothing else. Pass the webhook's --registry, --results-budget ... flags",
		"when they differ from the defaults. Exit 0 reported, 1 cannot read the input, 2 usage.",
	)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "report: unexpected arguments %q (flags only)\n", fs.Args())
		fs.Usage()
		return exitUsage
	case len(f.files) > 0 && (f.allNamespaces || f.kubeconfig != ""):
		fmt.Fprintln(stderr, "report: -f reads files, not a cluster: -A and --kubeconfig do not apply")
		return exitUsage
	case len(f.files) > 0 && strings.Contains(f.namespace, ","):
		fmt.Fprintln(stderr, "report: with -f, --namespace is the one namespace of objects without one")
		return exitUsage
	case f.allNamespaces && f.namespace != "":
		fmt.Fprintln(stderr, "report: --namespace and --all-namespaces exclude each other")
		return exitUsage
	case f.timeout <= 0 || f.timeout > registration.MaxResolutionTimeout:
		fmt.Fprintf(stderr, "report: --resolution-timeout must be in (0, %s]\n", registration.MaxResolutionTimeout)
		return exitUsage
	case f.concurrency < 1:
		fmt.Fprintln(stderr, "report: --concurrency must be at least 1")
		return exitUsage
	}
	opts := f.options()
	if err := opts.Validate(); err != nil {
		fmt.Fprintln(stderr, "report: --registry, --step-*, --results-budget, --registry-token-audience:", err)
		return exitUsage
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var src *reportSource
	var err error
	if len(f.files) > 0 {
		src, err = filesSource(f.files, stdin, f.namespace, f.noRemote)
	} else {
		src, err = clusterSource(ctx, f.kubeconfig, f.namespace, f.allNamespaces, f.timeout, f.ignorePolicy, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "report:", oneLine(err))
		return exitBadInput
	}
	h := &webhook.Handler{LabelKey: f.labelKey, Options: opts, Resolver: src.resolver, Log: logr.Discard()}
	if !f.ignorePolicy {
		h.Policies = src.policies
	}
	rep := evaluateAll(ctx, h, src, f, stderr)
	if src.wait != nil {
		src.wait() // the ResolutionRequests' deletions
	}
	if f.output.value == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return exitBadInput
		}
		return 0
	}
	printReportTable(stdout, rep)
	return 0
}

// Report is the JSON output (-o json).
type Report struct {
	// Source says what was read: "cluster" (and which namespaces) or the files.
	Source    string         `json:"source"`
	Items     []ReportItem   `json:"items"`
	Pipelines []PipelineItem `json:"pipelines"`
	Summary   ReportSummary  `json:"summary"`
	// Notes are what the report could not read (a missing CRD...).
	Notes []string `json:"notes,omitempty"`
}

// ReportItem is one PipelineRun, or one PipelineRun of a TriggerTemplate's
// resourcetemplates, that binds a volumeClaimTemplate.
type ReportItem struct {
	// Kind is PipelineRun or TriggerTemplate.
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	// Name is the run's (its generateName and "*" when it has none), or the
	// TriggerTemplate's.
	Name string `json:"name"`
	// Template is, for a TriggerTemplate, which resourcetemplate and the
	// run's name as written there.
	Template *TemplateRef `json:"template,omitempty"`
	// File is where the object was read from, with -f.
	File string `json:"file,omitempty"`
	// OptIn is what the opt-in labels of the run and its namespace ask for:
	// convert, audit, opted-out, no, or unknown (a namespace not read).
	OptIn string `json:"optIn"`
	// Verdict is would-convert, would-leave-unchanged (Reason, Message),
	// needs-remote-resolution, already-converted or error.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Pipeline is the key of the referenced Pipeline (see PipelineItem).
	Pipeline string `json:"pipeline,omitempty"`
	// Workspaces are the volumeClaimTemplate bindings and what each requests.
	Workspaces []WorkspaceStorage `json:"workspaces"`
	// Requested is their sum: the PVC storage one run requests.
	Requested Storage `json:"requested"`
	// Tasks are what each converted task would pull and push.
	Tasks    []transform.TaskReport `json:"tasks,omitempty"`
	Warnings []string               `json:"warnings,omitempty"`
	// Status is a run's Succeeded condition reason (Running, Succeeded,
	// Failed...); Finished says whether it is done.
	Status   string `json:"status,omitempty"`
	Finished bool   `json:"finished,omitempty"`
	// PVCs are those the run owns now.
	PVCs []PVC `json:"pvcs,omitempty"`
	// Recorded is what an admission wrote on the run: skipped-reason or
	// the audit annotations.
	Recorded map[string]string `json:"recorded,omitempty"`
	// UnsetTemplateParams are $(tt.params.x) without a default left in a
	// TriggerTemplate's run: the verdict may differ for what an
	// EventListener passes.
	UnsetTemplateParams []string `json:"unsetTemplateParams,omitempty"`

	// resolvedPipeline and declared are the referenced Pipeline's (for
	// Pipelines).
	resolvedPipeline bool
	declared         []DeclaredWorkspace
}

// TemplateRef locates a PipelineRun in a TriggerTemplate.
type TemplateRef struct {
	Index int    `json:"index"`
	Run   string `json:"run"`
}

// WorkspaceStorage is one volumeClaimTemplate binding.
type WorkspaceStorage struct {
	Name      string  `json:"name"`
	Requested Storage `json:"requested"`
}

// PVC is a PersistentVolumeClaim a run owns.
type PVC struct {
	Name string `json:"name"`
	// Size is its capacity when bound, else its request.
	Size  Storage `json:"size"`
	Phase string  `json:"phase,omitempty"`
}

// Storage is an amount of storage, as a quantity and in bytes.
type Storage struct {
	Quantity string `json:"quantity"`
	Bytes    int64  `json:"bytes"`
}

func storageOf(q resource.Quantity) Storage {
	return Storage{Quantity: humanBytes(q.Value()), Bytes: q.Value()}
}

func bytesStorage(b int64) Storage { return Storage{Quantity: humanBytes(b), Bytes: b} }

// humanBytes writes b in the largest binary unit that keeps it whole (as
// Kubernetes writes quantities), else in Gi or Mi with one decimal.
func humanBytes(b int64) string {
	if b == 0 {
		return "0"
	}
	units := []struct {
		name string
		size int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if b >= u.size && b%u.size == 0 {
			return fmt.Sprintf("%d%s", b/u.size, u.name)
		}
	}
	for _, u := range units {
		if b >= u.size {
			return fmt.Sprintf("%.1f%s", float64(b)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d", b)
}

// PipelineItem is a Pipeline that runs or TriggerTemplates reference while
// binding a volumeClaimTemplate. A Pipeline binds no volume itself: it
// declares workspaces, and each run binds them; BoundToVolumeClaimTemplate
// is what the referencing runs bind that way.
type PipelineItem struct {
	// Key is namespace/name for a Pipeline read by name, else the resolver
	// and its params.
	Key       string `json:"key"`
	Namespace string `json:"namespace"`
	// Resolved is false when no run could resolve it (Declared is unknown).
	Resolved bool `json:"resolved"`
	// Declared are its workspaces (optional ones marked).
	Declared                   []DeclaredWorkspace `json:"declared,omitempty"`
	BoundToVolumeClaimTemplate []string            `json:"boundToVolumeClaimTemplate"`
	// ReferencedBy lists the items, as "<Kind> <namespace>/<name>".
	ReferencedBy []string `json:"referencedBy"`
	// Verdicts counts the referencing items' verdicts.
	Verdicts map[string]int `json:"verdicts"`
}

// DeclaredWorkspace is a workspace a Pipeline declares.
type DeclaredWorkspace struct {
	Name     string `json:"name"`
	Optional bool   `json:"optional,omitempty"`
}

// ReportSummary adds the items up.
type ReportSummary struct {
	// PipelineRuns read, those that bind a volumeClaimTemplate, and those
	// the webhook converted at admission (they bind none any more).
	PipelineRuns             int `json:"pipelineRuns"`
	PipelineRunsWithTemplate int `json:"pipelineRunsWithVolumeClaimTemplate"`
	ConvertedAtAdmission     int `json:"convertedAtAdmission"`
	// TriggerTemplates read, and their PipelineRuns that bind one.
	TriggerTemplates    int `json:"triggerTemplates"`
	TriggerTemplateRuns int `json:"triggerTemplateRunsWithVolumeClaimTemplate"`
	// Verdicts and Reasons count items and the storage one run of each
	// requests.
	Verdicts map[string]Tally `json:"verdicts"`
	Reasons  map[string]Tally `json:"reasons,omitempty"`
	// Requested is what the PipelineRuns request; WouldStopRequesting what
	// those that would convert request (conversion requests none of it).
	Requested           Storage `json:"requested"`
	WouldStopRequesting Storage `json:"wouldStopRequesting"`
	// PerTriggeredRun is what each run of the TriggerTemplates that would
	// convert requests today (one such run each time they fire).
	PerTriggeredRun Storage `json:"perTriggeredRunWouldStopRequesting"`
	// HeldByFinished are the PVCs finished PipelineRuns still own, and of
	// those the runs that would convert.
	HeldByFinished             Tally `json:"heldByFinishedRuns"`
	HeldByFinishedWouldConvert Tally `json:"heldByFinishedRunsThatWouldConvert"`
}

// Tally is a count and a storage amount.
type Tally struct {
	Count   int     `json:"count"`
	Storage Storage `json:"storage"`
}

func (t *Tally) add(n int, bytes int64) {
	t.Count += n
	t.Storage = bytesStorage(t.Storage.Bytes + bytes)
}

// evaluateAll evaluates every candidate with concurrency workers, printing
// a progress line on stderr while it takes long.
func evaluateAll(ctx context.Context, h *webhook.Handler, src *reportSource, f reportFlags, stderr io.Writer) *Report {
	cands := src.candidates
	items := make([]ReportItem, len(cands))
	p := &progress{w: stderr, total: len(cands), start: time.Now(), every: progressInterval}
	next := make(chan int)
	var wg sync.WaitGroup
	for range f.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				items[i] = evaluateCandidate(ctx, h, src, cands[i], f.noRemote)
				p.done()
			}
		}()
	}
	for i := range cands {
		next <- i
	}
	close(next)
	wg.Wait()
	p.finish()

	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.Kind != b.Kind {
			return a.Kind == "PipelineRun"
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Template != nil && b.Template != nil && a.Template.Index < b.Template.Index
	})
	rep := &Report{Source: src.description, Items: items, Notes: src.notes}
	rep.Pipelines = pipelinesOf(items)
	rep.Summary = summarize(items, src)
	return rep
}

// progress prints "n/total runs evaluated" on stderr at most every so
// often, once the scan has taken that long, and a last line if it printed
// any.
type progress struct {
	w       io.Writer
	total   int
	start   time.Time
	every   time.Duration
	mu      sync.Mutex
	n       int
	last    time.Time
	printed bool
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	now := time.Now()
	if now.Sub(p.start) < p.every || now.Sub(p.last) < p.every {
		return
	}
	p.last, p.printed = now, true
	fmt.Fprintf(p.w, "report: %d/%d runs evaluated (%s)\n", p.n, p.total, now.Sub(p.start).Round(time.Second))
}

func (p *progress) finish() {
	if p.printed {
		fmt.Fprintf(p.w, "report: %d runs evaluated in %s\n", p.total, time.Since(p.start).Round(time.Millisecond))
	}
}

func summarize(items []ReportItem, src *reportSource) ReportSummary {
	s := ReportSummary{
		PipelineRuns:         src.runsRead,
		ConvertedAtAdmission: src.convertedAtAdmission,
		TriggerTemplates:     src.templatesRead,
		Verdicts:             map[string]Tally{},
		Reasons:              map[string]Tally{},
	}
	var requested, stop, perRun int64
	for _, it := range items {
		v := s.Verdicts[it.Verdict]
		v.add(1, it.Requested.Bytes)
		s.Verdicts[it.Verdict] = v
		if it.Reason != "" {
			r := s.Reasons[it.Reason]
			r.add(1, it.Requested.Bytes)
			s.Reasons[it.Reason] = r
		}
		if it.Kind != "PipelineRun" {
			s.TriggerTemplateRuns++
			if it.Verdict == verdictWouldConvert {
				perRun += it.Requested.Bytes
			}
			continue
		}
		s.PipelineRunsWithTemplate++
		requested += it.Requested.Bytes
		if it.Verdict == verdictWouldConvert {
			stop += it.Requested.Bytes
		}
		if it.Finished {
			var held int64
			for _, p := range it.PVCs {
				held += p.Size.Bytes
			}
			s.HeldByFinished.add(len(it.PVCs), held)
			if it.Verdict == verdictWouldConvert {
				s.HeldByFinishedWouldConvert.add(len(it.PVCs), held)
			}
		}
	}
	s.Requested, s.WouldStopRequesting, s.PerTriggeredRun = bytesStorage(requested), bytesStorage(stop), bytesStorage(perRun)
	if s.HeldByFinished.Storage.Quantity == "" {
		s.HeldByFinished.Storage = bytesStorage(0)
	}
	if s.HeldByFinishedWouldConvert.Storage.Quantity == "" {
		s.HeldByFinishedWouldConvert.Storage = bytesStorage(0)
	}
	if len(s.Reasons) == 0 {
		s.Reasons = nil
	}
	return s
}

// printReportTable writes the items, the Pipelines and the summary.
func printReportTable(w io.Writer, r *Report) {
	fmt.Fprintf(w, "Read: %s\n", r.Source)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(r.Items) == 0 {
		fmt.Fprintln(w, "\nNo PipelineRun or TriggerTemplate binds a volumeClaimTemplate.")
	}
	for _, it := range r.Items {
		fmt.Fprintln(w)
		name := it.Namespace + "/" + it.Name
		if it.Template != nil {
			name += fmt.Sprintf(" resourcetemplates[%d] (PipelineRun %s)", it.Template.Index, it.Template.Run)
		}
		head := fmt.Sprintf("%s %s: %s", it.Kind, name, it.Verdict)
		if it.Reason != "" {
			head += ": " + it.Reason
		}
		fmt.Fprintf(w, "%s (opt-in: %s)\n", head, it.OptIn)
		if it.Message != "" {
			fmt.Fprintf(w, "  why: %s\n", it.Message)
		}
		var ws []string
		for _, x := range it.Workspaces {
			ws = append(ws, x.Name+" "+x.Requested.Quantity)
		}
		line := fmt.Sprintf("  requests %s of PVC storage per run (%s)", it.Requested.Quantity, strings.Join(ws, ", "))
		if it.Kind == "PipelineRun" && it.Status != "" {
			line += "; " + it.Status
		}
		fmt.Fprintln(w, line)
		if len(it.PVCs) > 0 {
			var ps []string
			for _, p := range it.PVCs {
				ps = append(ps, p.Name+" "+p.Size.Quantity)
			}
			held := "owns"
			if it.Finished {
				held = "finished, still holds"
			}
			fmt.Fprintf(w, "  %s PVC %s\n", held, strings.Join(ps, ", "))
		}
		if it.Pipeline != "" {
			fmt.Fprintf(w, "  pipeline: %s\n", it.Pipeline)
		}
		if len(it.UnsetTemplateParams) > 0 {
			fmt.Fprintf(w, "  template params without a default (the verdict may differ for what an EventListener passes): %s\n", strings.Join(it.UnsetTemplateParams, ", "))
		}
		if rec := it.Recorded; len(rec) > 0 {
			keys := make([]string, 0, len(rec))
			for k := range rec {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if k == webhook.AnnotationAuditTasks {
					continue // the tasks below say it
				}
				fmt.Fprintf(w, "  recorded at admission: %s: %s\n", k, rec[k])
			}
		}
		printTasks(w, it.Tasks)
		for _, warn := range it.Warnings {
			fmt.Fprintf(w, "  once converted: %s\n", warn)
		}
	}
	if len(r.Pipelines) > 0 {
		fmt.Fprintln(w, "\nPipelines (a Pipeline declares workspaces; the runs and TriggerTemplates that reference it bind them):")
		for _, p := range r.Pipelines {
			declared := "unknown (not resolved)"
			if p.Resolved {
				var d []string
				for _, x := range p.Declared {
					if x.Optional {
						d = append(d, x.Name+" (optional)")
					} else {
						d = append(d, x.Name)
					}
				}
				declared = strings.Join(d, ", ")
			}
			fmt.Fprintf(w, "  %s: declares %s; bound to a volumeClaimTemplate: %s; referenced by %d (%s)\n",
				p.Key, declared, strings.Join(p.BoundToVolumeClaimTemplate, ", "), len(p.ReferencedBy), verdictCounts(p.Verdicts))
		}
	}

	s := r.Summary
	fmt.Fprintln(w, "\nSummary")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VERDICT\tITEMS\tPVC STORAGE (ONE RUN OF EACH)")
	for _, v := range verdictOrder {
		t, ok := s.Verdicts[v]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", v, t.Count, t.Storage.Quantity)
		if v != verdictWouldLeave {
			continue
		}
		reasons := make([]string, 0, len(s.Reasons))
		for k := range s.Reasons {
			reasons = append(reasons, k)
		}
		sort.Strings(reasons)
		for _, k := range reasons {
			fmt.Fprintf(tw, "    %s\t%d\t%s\n", k, s.Reasons[k].Count, s.Reasons[k].Storage.Quantity)
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "PipelineRuns read: %d (%d bind a volumeClaimTemplate; %d converted at admission). TriggerTemplates read: %d (PipelineRun templates that bind one: %d).\n",
		s.PipelineRuns, s.PipelineRunsWithTemplate, s.ConvertedAtAdmission, s.TriggerTemplates, s.TriggerTemplateRuns)
	fmt.Fprintf(w, "PVC storage the PipelineRuns request: %s; those that would convert: %s.\n", s.Requested.Quantity, s.WouldStopRequesting.Quantity)
	fmt.Fprintf(w, "PVCs finished PipelineRuns still hold: %d (%s); of runs that would convert: %d (%s).\n",
		s.HeldByFinished.Count, s.HeldByFinished.Storage.Quantity, s.HeldByFinishedWouldConvert.Count, s.HeldByFinishedWouldConvert.Storage.Quantity)
	fmt.Fprintf(w, "Conversion would stop requesting %s of PVC storage for these PipelineRuns", s.WouldStopRequesting.Quantity)
	if s.TriggerTemplateRuns > 0 {
		fmt.Fprintf(w, ", and %s for each firing of the TriggerTemplates that would convert", s.PerTriggeredRun.Quantity)
	}
	fmt.Fprintln(w, " (their files go to node-local emptyDir while a task runs, and to the registry until its retention deletes them).")
}

// printTasks is the task table of convert's and report's text output.
func printTasks(w io.Writer, tasks []transform.TaskReport) {
	width := 4
	for _, t := range tasks {
		width = max(width, len(t.Name))
	}
	for _, t := range tasks {
		from := strings.Join(t.PullsFrom, ",")
		if from == "" {
			from = "-"
		}
		push := "no"
		if t.Pushes {
			push = "yes"
		}
		extra := ""
		if t.Inlined {
			extra = "  (Task inlined)"
		}
		if t.Finally {
			extra += "  (finally)"
		}
		fmt.Fprintf(w, "  %-*s  pulls from: %-30s pushes: %s%s\n", width, t.Name, from, push, extra)
	}
}

func verdictCounts(m map[string]int) string {
	var parts []string
	for _, v := range verdictOrder {
		if n := m[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, v))
		}
	}
	return strings.Join(parts, ", ")
}

// usage is a subcommand's fs.Usage: its lines, then its flags.
func usage(fs *flag.FlagSet, w io.Writer, lines ...string) func() {
	return func() {
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		fs.PrintDefaults()
	}
}
