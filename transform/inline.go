package transform

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// What inlining a taskRef (taskRef -> taskSpec) must keep, because Tekton
// treats an embedded spec differently from a referenced one:
//
//   - params: Tekton substitutes the pipeline's params into an embedded
//     taskSpec, unless the PipelineTask passes a param of the same name
//     (propagateParams in its PipelineRun reconciler). A Task param that
//     relied on its own default would take a same-named pipeline param's
//     value once inlined; scopeParams makes the PipelineTask pass the default.
//   - $(context.task.name) is the Task's name for a reference and the
//     TaskRun's name for an embedded spec; it is substituted with the name.
//   - metadata: Tekton copies a referenced Task's labels and annotations onto
//     its TaskRuns (and so pods) and labels them tekton.dev/task; an
//     embedded spec carries them in EmbeddedTask.Metadata instead.

// lastApplied is the annotation Tekton does not copy from a Task.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// scopeParams returns the params the PipelineTask must pass in addition to
// its own so that every param of the inlined spec resolves to the value the
// reference would have had. pipelineParams are the names Tekton substitutes
// at the Pipeline level (the pipeline's params and the run's).
func scopeParams(pt *v1.PipelineTask, spec *v1.TaskSpec, pipelineParams map[string]bool) ([]v1.Param, error) {
	passed := map[string]bool{}
	for _, p := range pt.Params {
		passed[p.Name] = true
	}
	var add []v1.Param
	for _, ps := range spec.Params {
		if passed[ps.Name] || !pipelineParams[ps.Name] {
			continue
		}
		if ps.Default == nil {
			// The reference fails (a required param is missing); inlined,
			// the pipeline's value would fill it and the task would run.
			return nil, refuse(ReasonParamScope, "pipeline task %q does not pass the Task's required param %q, which a pipeline param of the same name would fill once the Task is inlined", pt.Name, ps.Name)
		}
		if hasVariable(*ps.Default) {
			// Passed through the PipelineTask, Tekton would substitute it at
			// the Pipeline level instead of the Task's.
			return nil, refuse(ReasonParamScope, "pipeline task %q: the default of the Task's param %q refers to a variable and is shadowed by a pipeline param of the same name", pt.Name, ps.Name)
		}
		add = append(add, v1.Param{Name: ps.Name, Value: *ps.Default.DeepCopy()})
	}
	return add, nil
}

func hasVariable(v v1.ParamValue) bool {
	if strings.Contains(v.StringVal, "$(") {
		return true
	}
	for _, s := range v.ArrayVal {
		if strings.Contains(s, "$(") {
			return true
		}
	}
	for _, s := range v.ObjectVal {
		if strings.Contains(s, "$(") {
			return true
		}
	}
	return false
}

// pipelineParamNames are the params Tekton substitutes into embedded
// taskSpecs: the pipeline's and, propagated, the run's.
func pipelineParamNames(run v1.Params, spec []v1.ParamSpec) map[string]bool {
	names := map[string]bool{}
	for _, p := range run {
		names[p.Name] = true
	}
	for _, p := range spec {
		names[p.Name] = true
	}
	return names
}

// withTaskName substitutes $(context.task.name), which an embedded spec
// would see as the TaskRun's name, with the referenced Task's name.
// It works on the JSON text: the variable can only occur in strings, and a
// Task name (a DNS subdomain) needs no JSON escaping.
func withTaskName(spec v1.TaskSpec, name string) (v1.TaskSpec, error) {
	raw, err := json.Marshal(spec)
	if err != nil || name == "" || !strings.Contains(string(raw), contextTaskName) {
		return spec, err
	}
	var out v1.TaskSpec
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(raw), contextTaskName, name)), &out); err != nil {
		return spec, fmt.Errorf("substituting %s: %w", contextTaskName, err)
	}
	return out, nil
}

const contextTaskName = "$(context.task.name)"

// taskMetadata is what an inlined spec carries so its TaskRuns and pods get
// what Tekton gives a referenced Task's: its labels and annotations (without
// kubectl's last-applied configuration) and tekton.dev/task.
func taskMetadata(meta Meta) v1.PipelineTaskMetadata {
	labels := maps.Clone(meta.Labels)
	if meta.Name != "" {
		if labels == nil {
			labels = map[string]string{}
		}
		labels[pipeline.TaskLabelKey] = meta.Name
	}
	annotations := maps.Clone(meta.Annotations)
	delete(annotations, lastApplied)
	if len(annotations) == 0 {
		annotations = nil
	}
	return v1.PipelineTaskMetadata{Labels: labels, Annotations: annotations}
}

// pipelineRunMetadata adds to a run whose pipelineRef is inlined what Tekton
// gives a run of a referenced Pipeline: the Pipeline's labels and
// annotations (the run's own take precedence) and tekton.dev/pipeline, the
// Pipeline's name (for an embedded spec Tekton would use the run's name, or
// its generateName).
func pipelineRunMetadata(labels, annotations map[string]string, meta Meta) (map[string]string, map[string]string) {
	labels = mergeMaps(meta.Labels, labels)
	if meta.Name != "" {
		if labels == nil {
			labels = map[string]string{}
		}
		// Tekton sets it from a referenced Pipeline even over the run's own.
		labels[pipeline.PipelineLabelKey] = meta.Name
	}
	a := maps.Clone(meta.Annotations)
	delete(a, lastApplied)
	return labels, mergeMaps(a, annotations)
}

// mergeMaps is base with over's entries on top; over when both are empty.
func mergeMaps(base, over map[string]string) map[string]string {
	if len(base) == 0 && len(over) == 0 {
		return over
	}
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, over)
	return out
}
