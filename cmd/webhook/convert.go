package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/offline"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// Exit codes of `convert`.
const (
	exitConverted = 0 // stdout holds the converted run (or our own output, unchanged)
	exitBadInput  = 1 // a file, document or reference is wrong: stderr says which
	exitUsage     = 2
	exitUnchanged = 3 // the run is left as it is: stderr says why
)

// runConvert converts a PipelineRun from files, resolving its references
// against the other supplied objects, and prints the result as v1 YAML.
func runConvert(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files stringList
	fs.Var(&files, "f", "a YAML file with the PipelineRun and the Pipelines and Tasks it references (repeatable; - reads stdin)")
	options := transformFlags(fs)
	labelKey := fs.String("label-key", transform.EnabledLabel, `label whose "false" on the run opts it out, as the webhook's --label-key (a namespace's label is not known offline: a run is taken as opted in)`)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: webhook convert -f run.yaml [-f pipeline.yaml -f tasks.yaml ...] [flags]")
		fmt.Fprintln(stderr, "exit 0 converted, 1 bad input, 2 usage, 3 left unchanged")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if len(files) == 0 || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "error: "+format+"\n", a...)
		return exitBadInput
	}

	var docs []offline.Document
	for _, f := range files {
		d, err := offline.LoadFile(f, stdin)
		if err != nil {
			return fail("%v", err)
		}
		docs = append(docs, d...)
	}
	var run *v1.PipelineRun
	for _, d := range docs {
		if pr, ok := d.Object.(*v1.PipelineRun); ok {
			if run != nil {
				return fail("%s: document %d: a second PipelineRun; convert takes exactly one", d.File, d.Index)
			}
			run = pr
		}
	}
	if run == nil {
		return fail("no PipelineRun in %s", strings.Join(files, ", "))
	}
	out, report, err := convertRun(run, docs, *labelKey, options())
	if err != nil {
		return fail("%v", oneLine(err))
	}
	y, err := offline.EncodeYAML(out)
	if err != nil {
		return fail("%v", err)
	}
	if _, err := stdout.Write(y); err != nil {
		return fail("writing output: %v", err)
	}
	printReport(stderr, run, report)
	switch report.Outcome {
	case transform.Converted, transform.AlreadyConverted:
		return exitConverted
	default:
		return exitUnchanged
	}
}

// convertRun decides as the webhook's handler does, in its order: the run's
// opt-out label, an earlier skipped-reason, then resolution (package
// resolution, from the files) and the conversion. A run left unchanged for a
// reason comes back with the skipped-reason annotation the webhook would
// store. The error is a bad input (exit 1).
func convertRun(run *v1.PipelineRun, docs []offline.Document, labelKey string, opts transform.Options) (*v1.PipelineRun, transform.Report, error) {
	if transform.OptedOut(run.Labels, labelKey) {
		return run, transform.Report{Outcome: transform.Unchanged, Reason: "OptedOut", Message: fmt.Sprintf("labelled %s: \"false\"", labelKey)}, nil
	}
	if earlier, ok := transform.SkippedEarlier(run.Annotations); ok {
		return run, transform.Report{Outcome: transform.Unchanged, Reason: "SkippedEarlier", Message: earlier}, nil
	}
	if _, done := run.Annotations[transform.AnnotationConverted]; done || !bindsVolumeClaimTemplate(run) {
		// Already converted, or nothing to convert: nothing to resolve.
		return transform.PipelineRun(run, transform.Resolved{}, opts)
	}
	resolved, err := offline.Resolve(run, docs)
	if err != nil {
		reason, message, ok := resolution.Describe(err)
		if !ok {
			return nil, transform.Report{}, err
		}
		return skipped(run, transform.Reason(reason), message), transform.Report{Outcome: transform.Unchanged, Reason: transform.Reason(reason), Message: message}, nil
	}
	out, report, err := transform.PipelineRun(run, resolved, opts)
	if err != nil {
		return nil, transform.Report{}, err
	}
	switch report.Outcome {
	case transform.Unchanged:
		out = skipped(out, report.Reason, report.Message)
	case transform.Converted:
		out.Annotations = webhook.WithoutAuditAnnotations(out.Annotations)
	}
	return out, report, nil
}

// skipped is run with the skipped-reason annotation the webhook stores on a
// run it leaves unchanged (and without an earlier audit's annotations, which
// it removes).
func skipped(run *v1.PipelineRun, reason transform.Reason, message string) *v1.PipelineRun {
	out := run.DeepCopy()
	out.Annotations = webhook.WithoutAuditAnnotations(out.Annotations)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[transform.AnnotationSkippedReason] = transform.SkippedReason(string(reason), message)
	return out
}

func bindsVolumeClaimTemplate(run *v1.PipelineRun) bool {
	for _, w := range run.Spec.Workspaces {
		if w.VolumeClaimTemplate != nil {
			return true
		}
	}
	return false
}

// oneLine joins a multi-error into one line, so every error is one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func printReport(w io.Writer, run *v1.PipelineRun, r transform.Report) {
	name := run.Name
	if name == "" {
		name = run.GenerateName + "*"
	}
	switch r.Outcome {
	case transform.Unchanged:
		fmt.Fprintf(w, "left unchanged: PipelineRun %s: %s: %s\n", name, r.Reason, r.Message)
		return
	case transform.NothingToConvert:
		fmt.Fprintf(w, "left unchanged: PipelineRun %s binds no volumeClaimTemplate workspace\n", name)
		return
	case transform.AlreadyConverted:
		fmt.Fprintf(w, "already converted: PipelineRun %s\n", name)
		return
	}
	fmt.Fprintf(w, "converted PipelineRun %s: workspaces %s become emptyDir, moved through the registry\n", name, strings.Join(r.Workspaces, ", "))
	printTasks(w, r.Tasks)
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}
