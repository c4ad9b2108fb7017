package transform

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// unconvertible is the error inside transform that turns into an Unchanged
// outcome: the run is valid, we just cannot convert it faithfully.
type unconvertible struct {
	reason Reason
	msg    string
}

func (u *unconvertible) Error() string { return string(u.reason) + ": " + u.msg }

func refuse(reason Reason, format string, args ...any) error {
	return &unconvertible{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// PipelineRun converts run. It never mutates run, resolved or opts. The error
// is only for invalid options or a nil run; a run that cannot be converted
// faithfully comes back as an unchanged deep copy with Report.Outcome
// Unchanged and a Reason.
func PipelineRun(run *v1.PipelineRun, resolved Resolved, opts Options) (*v1.PipelineRun, Report, error) {
	if run == nil {
		return nil, Report{}, errors.New("transform: nil PipelineRun")
	}
	if err := opts.Validate(); err != nil {
		return nil, Report{}, err
	}
	if _, done := run.Annotations[AnnotationConverted]; done {
		return run.DeepCopy(), Report{Outcome: AlreadyConverted, Workspaces: splitList(run.Annotations[AnnotationConverted])}, nil
	}
	converted := convertedWorkspaces(run)
	if len(converted) == 0 {
		if hasInjectedSteps(run.Spec.PipelineSpec) {
			// Our own output without its marker (someone removed the
			// annotations): still ours, still nothing to do.
			return run.DeepCopy(), Report{Outcome: AlreadyConverted}, nil
		}
		return run.DeepCopy(), Report{Outcome: NothingToConvert}, nil
	}

	// convert copies the embedded pipelineSpec it rewrites, so out does
	// not copy it a first time: until convert replaces it, out points at
	// run's, read only, and gets a copy of its own if convert keeps it.
	shallow := *run
	shallow.Spec.PipelineSpec = nil
	out := shallow.DeepCopy()
	out.Spec.PipelineSpec = run.Spec.PipelineSpec
	report, err := convert(out, converted, resolved, opts)
	if err == nil && out.Spec.PipelineSpec != nil && out.Spec.PipelineSpec == run.Spec.PipelineSpec {
		out.Spec.PipelineSpec = run.Spec.PipelineSpec.DeepCopy()
	}
	var u *unconvertible
	if errors.As(err, &u) {
		return run.DeepCopy(), Report{Outcome: Unchanged, Reason: u.reason, Message: u.msg}, nil
	}
	if err != nil {
		return nil, Report{}, err
	}
	return out, report, nil
}

// TasksNeeded lists the PipelineTasks of pipeline (tasks, then finally) whose
// Task spec a caller must resolve into Resolved.Tasks: those with a Task or
// ClusterTask taskRef that bind a volumeClaimTemplate workspace of run.
func TasksNeeded(run *v1.PipelineRun, pipeline *v1.PipelineSpec) []v1.PipelineTask {
	if run == nil || pipeline == nil {
		return nil
	}
	converted := convertedWorkspaces(run)
	var needed []v1.PipelineTask
	for _, pt := range allTasks(pipeline) {
		if pt.TaskRef == nil || pt.TaskRef.IsCustomTask() || len(bindingsTo(pt, converted)) == 0 {
			continue
		}
		needed = append(needed, pt)
	}
	return needed
}

// convertedWorkspaces is the set of the run's workspace bindings we convert:
// exactly those with a volumeClaimTemplate. Existing claims (caches),
// emptyDir, configMap, secret, projected and csi are left alone on purpose.
func convertedWorkspaces(run *v1.PipelineRun) map[string]bool {
	set := map[string]bool{}
	for _, wb := range run.Spec.Workspaces {
		if wb.VolumeClaimTemplate != nil {
			set[wb.Name] = true
		}
	}
	return set
}

func allTasks(spec *v1.PipelineSpec) []v1.PipelineTask {
	return append(slices.Clone(spec.Tasks), spec.Finally...)
}

// pipelineWorkspace is the pipeline workspace a PipelineTask binding refers
// to; Tekton lets `workspace` default to the task workspace's own name.
func pipelineWorkspace(b v1.WorkspacePipelineTaskBinding) string {
	if b.Workspace != "" {
		return b.Workspace
	}
	return b.Name
}

// bindingsTo returns pt's workspace bindings that refer to converted workspaces.
func bindingsTo(pt v1.PipelineTask, converted map[string]bool) []v1.WorkspacePipelineTaskBinding {
	var out []v1.WorkspacePipelineTaskBinding
	for _, b := range pt.Workspaces {
		if converted[pipelineWorkspace(b)] {
			out = append(out, b)
		}
	}
	return out
}

// convert rewrites out in place. It works on copies of everything it takes
// from resolved, and returns an *unconvertible error before touching out if
// anything stands in the way, so there are no partial conversions.
func convert(out *v1.PipelineRun, converted map[string]bool, resolved Resolved, opts Options) (Report, error) {
	var spec v1.PipelineSpec
	var pipelineSource *Source
	switch {
	case out.Spec.PipelineSpec != nil:
		spec = *out.Spec.PipelineSpec.DeepCopy()
	case resolved.Pipeline != nil:
		spec = *resolved.Pipeline.Spec.DeepCopy()
		src := resolved.Pipeline.Source
		pipelineSource = &src
	default:
		return Report{}, refuse(ReasonMissingPipeline, "the run references a Pipeline whose spec was not resolved")
	}
	if err := checkReservedNames(out, &spec); err != nil {
		return Report{}, err
	}
	propagated, err := propagateWorkspaces(&spec, converted)
	if err != nil {
		return Report{}, err
	}

	g, err := buildGraph(&spec)
	if err != nil {
		return Report{}, refuse(ReasonInvalidPipeline, "%v", err)
	}

	plans, err := planTasks(&spec, converted, resolved, g)
	if err != nil {
		return Report{}, err
	}
	for _, p := range plans {
		p.propagated = propagated[p.name]
	}
	if err := checkRepositories(slices.Sorted(maps.Keys(converted))); err != nil {
		return Report{}, err
	}
	if err := checkReferences(out.Namespace, plans, opts); err != nil {
		return Report{}, err
	}
	report := Report{Outcome: Converted, Workspaces: slices.Sorted(maps.Keys(converted))}
	sources := sourcesAnnotation{Tasks: map[string]Source{}}
	pipelineParams := pipelineParamNames(out.Spec.Params, spec.Params)
	for _, p := range plans {
		pt := p.task(&spec)
		p.warnings = append(failureWarnings(pt, p), p.warnings...)
		if err := inject(pt, p, opts, pipelineParams); err != nil {
			return Report{}, err
		}
		if p.source != nil {
			sources.Tasks[p.name] = *p.source
		}
		report.Tasks = append(report.Tasks, p.report())
		report.Warnings = append(report.Warnings, p.warnings...)
	}

	// When no task binds a converted workspace, swapping the claim for an
	// emptyDir is still exactly equivalent, and nothing needs inlining.
	if len(plans) > 0 {
		if out.Spec.PipelineRef != nil && resolved.Pipeline != nil {
			out.Labels, out.Annotations = pipelineRunMetadata(out.Labels, out.Annotations, resolved.Pipeline.Meta)
		}
		out.Spec.PipelineRef = nil
		out.Spec.PipelineSpec = &spec
	}
	for i := range out.Spec.Workspaces {
		wb := &out.Spec.Workspaces[i]
		if converted[wb.Name] {
			wb.VolumeClaimTemplate = nil
			wb.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}

	sources.Pipeline = pipelineSource
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationConverted] = strings.Join(report.Workspaces, ",")
	out.Annotations[AnnotationRepository] = opts.repositoryPattern()
	if sources.Pipeline != nil || len(sources.Tasks) > 0 {
		out.Annotations[AnnotationSources] = mustJSON(sources)
	}
	if len(report.Tasks) > 0 {
		out.Annotations[AnnotationTasks] = mustJSON(report.Tasks)
	}
	return report, nil
}

// sourcesAnnotation is the JSON shape of AnnotationSources.
type sourcesAnnotation struct {
	Pipeline *Source           `json:"pipeline,omitempty"`
	Tasks    map[string]Source `json:"tasks,omitempty"`
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain strings, maps and slices go in here.
		panic(fmt.Sprintf("transform: marshalling annotation: %v", err))
	}
	return string(b)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// hasInjectedSteps reports whether spec carries pull or push steps that a
// conversion injected.
func hasInjectedSteps(spec *v1.PipelineSpec) bool {
	if spec == nil {
		return false
	}
	for _, pt := range allTasks(spec) {
		if pt.TaskSpec == nil {
			continue
		}
		for _, s := range pt.TaskSpec.Steps {
			if strings.HasPrefix(s.Name, pullStepPrefix) || strings.HasPrefix(s.Name, pushStepPrefix) {
				return true
			}
		}
	}
	return false
}
