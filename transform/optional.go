package transform

import (
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// The pull step fails when a producer's delta is missing: a lost artifact
// must not turn into a task that quietly sees an older workspace. A producer
// that Tekton may legitimately not run to success while its consumers still
// run is passed to the step as optional instead, and its missing delta reads
// as "contributed nothing", as a skipped task contributes nothing on a PVC.
//
// For tasks these rules are decided at admission from the pipeline's own
// spec and Tekton's DAG. They err on the side of optional: an optional
// producer that did run is applied all the same, only its absence is
// forgiven. finally tasks run after the DAG, so they are given each
// producer's $(tasks.<name>.status) instead (see producerStatusValue).

// mayNotSucceed reports whether a PipelineTask's own spec lets a run go on
// without it having succeeded:
//   - `when` expressions: Tekton skips it when they are false and still runs
//     its dependents;
//   - onError continue: it may fail before its push step and the run goes on.
//     onError may also be a $(params...) reference, which may become
//     continue at run time; only an explicit stopAndFail rules it out.
func mayNotSucceed(pt *v1.PipelineTask) bool {
	return len(pt.When) > 0 || (pt.OnError != "" && pt.OnError != v1.PipelineTaskStopAndFail)
}

// optionalProducers returns the tasks (not finally) whose delta a task after
// them may legitimately find missing:
//   - the task itself may not succeed (mayNotSucceed);
//   - the task has a matrix: an empty fan-out is skipped and pushes no tag;
//   - any of its ancestors in Tekton's DAG may not succeed: a skipped or
//     failed ancestor leaves its results missing, and Tekton skips the tasks
//     that consume them.
func optionalProducers(spec *v1.PipelineSpec, g *graph) map[string]bool {
	uncertain := map[string]bool{}
	for i := range spec.Tasks {
		if mayNotSucceed(&spec.Tasks[i]) {
			uncertain[spec.Tasks[i].Name] = true
		}
	}
	optional := map[string]bool{}
	for i := range spec.Tasks {
		pt := &spec.Tasks[i]
		optional[pt.Name] = uncertain[pt.Name] || pt.IsMatrixed() || anyOf(g.ancestors[pt.Name], uncertain)
	}
	return optional
}

// anyOf reports whether any member of set is in marked.
func anyOf(set, marked map[string]bool) bool {
	for name := range set {
		if marked[name] {
			return true
		}
	}
	return false
}
