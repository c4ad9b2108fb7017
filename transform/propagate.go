package transform

import (
	"slices"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// propagateWorkspaces makes explicit, for the converted workspaces, what
// Tekton's "propagated workspaces" do at run time, so the normal rules see
// every task that touches a converted workspace:
//
//   - an embedded taskSpec may use $(workspaces.<name>...) in its steps,
//     sidecars or stepTemplate without binding <name>; the PipelineRun
//     reconciler then binds it by name (propagateWorkspaces, with
//     workspace.FindWorkspacesUsedByTask, which workspacesUsedByTask
//     reproduces). The conversion adds the same `{name: <name>}` binding;
//     planTask then declares it in the spec, as the TaskRun reconciler
//     would;
//   - an embedded pipelineSpec may bind workspaces it does not declare; the
//     conversion declares the converted ones it binds.
//
// Workspaces that are not converted are left for Tekton to propagate, as
// before. It returns, per PipelineTask, the task workspaces it bound.
func propagateWorkspaces(spec *v1.PipelineSpec, converted map[string]bool) (map[string][]string, error) {
	bound := map[string][]string{}
	for _, pts := range [][]v1.PipelineTask{spec.Tasks, spec.Finally} {
		for i := range pts {
			pt := &pts[i]
			if pt.TaskSpec == nil || pt.TaskSpec.IsCustomTask() {
				continue
			}
			used, err := workspacesUsedByTask(&pt.TaskSpec.TaskSpec)
			if err != nil {
				return nil, refuse(ReasonInvalidPipeline, "pipeline task %q: %v", pt.Name, err)
			}
			for _, name := range used { // sorted
				if !converted[name] || slices.ContainsFunc(pt.Workspaces, func(b v1.WorkspacePipelineTaskBinding) bool { return b.Name == name }) {
					continue
				}
				pt.Workspaces = append(pt.Workspaces, v1.WorkspacePipelineTaskBinding{Name: name})
				bound[pt.Name] = append(bound[pt.Name], name)
			}
		}
	}
	declared := map[string]bool{}
	for _, d := range spec.Workspaces {
		declared[d.Name] = true
	}
	for _, pt := range allTasks(spec) {
		for _, b := range bindingsTo(pt, converted) {
			if ws := pipelineWorkspace(b); !declared[ws] {
				declared[ws] = true
				spec.Workspaces = append(spec.Workspaces, v1.PipelineWorkspaceDeclaration{Name: ws})
			}
		}
	}
	return bound, nil
}
