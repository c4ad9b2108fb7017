package transform

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// What a failed attempt wrote is where a converted run differs from a PVC
// on purpose or by necessity (docs/design.md, "Known differences"):
//
//   - retries: on a PVC attempt n+1 starts on what attempt n left; converted,
//     every attempt's new pod pulls its ancestors' state and starts clean,
//     which is what a retry is for (a half-done clone is what makes the next
//     attempt fail), so it is kept;
//   - onError continue: on a PVC the tasks after a task that failed see what
//     it wrote before failing; converted, its push step (the last) never ran,
//     so they see the workspace without it. Pushing after a failed step
//     would mean marking the user's steps onError: continue, which runs the
//     steps after a failure and changes the TaskRun's status, so it is not
//     done.
//
// Both are said in an admission warning on the runs where they can matter.

// failureWarnings are the warnings of a converted task whose failed work a
// PVC would show and the converted run does not. Called before inject, which
// may lift readOnly from the declarations.
func failureWarnings(pt *v1.PipelineTask, p *taskPlan) []string {
	var warnings []string
	if written := p.writableWorkspaces(); pt.Retries > 0 && len(written) > 0 {
		warnings = append(warnings, fmt.Sprintf(
			"task %q has retries: %d: each attempt starts from what its ancestors left in %s, not from what a failed attempt wrote there (on a PVC it would)",
			p.name, pt.Retries, quoted(written)))
	}
	if read := p.pushedWorkspaces(); mayContinueOnError(pt) && len(read) > 0 {
		warnings = append(warnings, fmt.Sprintf(
			"task %q has onError: %s: if it fails, the tasks after it see %s without what it wrote before failing (on a PVC they would)",
			p.name, pt.OnError, quoted(read)))
	}
	return warnings
}

// mayContinueOnError: onError continue, or a $(params...) that may become it.
func mayContinueOnError(pt *v1.PipelineTask) bool {
	return pt.OnError != "" && pt.OnError != v1.PipelineTaskStopAndFail
}

// writableWorkspaces are the converted workspaces the task may write, in
// binding order.
func (p *taskPlan) writableWorkspaces() []string {
	var out []string
	for _, b := range p.bindings {
		ws := pipelineWorkspace(b)
		if decl := p.declaration(b.Name); decl != nil && !decl.ReadOnly && !slices.Contains(out, ws) {
			out = append(out, ws)
		}
	}
	return out
}

// pushedWorkspaces are the converted workspaces a later task reads from this
// one (linkProducers has decided), in binding order.
func (p *taskPlan) pushedWorkspaces() []string {
	var out []string
	for _, ws := range p.workspaces {
		if p.pushes[ws] {
			out = append(out, ws)
		}
	}
	return out
}

func quoted(workspaces []string) string {
	q := make([]string, len(workspaces))
	for i, ws := range workspaces {
		q[i] = fmt.Sprintf("workspace %q", ws)
	}
	return strings.Join(q, " and ")
}
