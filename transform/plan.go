package transform

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// taskPlan is what the conversion will do to one PipelineTask that binds a
// converted workspace. Plans are complete before anything is rewritten.
type taskPlan struct {
	name    string
	finally bool
	index   int // in spec.Tasks or spec.Finally
	// bindings are the task's bindings to converted workspaces, in order.
	bindings []v1.WorkspacePipelineTaskBinding
	// workspaces are the converted pipeline workspaces, in first-binding order.
	workspaces []string
	spec       v1.TaskSpec // a copy: either the embedded spec or the resolved one
	inlined    bool        // spec came from resolved (taskRef -> taskSpec)
	meta       Meta        // the resolved Task's metadata, when inlined
	source     *Source
	matrixed   bool
	pullsFrom  map[string][]string // workspace -> producers, in pull order
	optional   map[string][]string // workspace -> producers in pullsFrom that may be absent
	pushes     map[string]bool     // workspace -> at least one writable binding
	// declared are the task workspaces the conversion declared because the
	// spec bound them without a declaration (as Tekton does at run time).
	declared []string
	// propagated are the task workspaces the conversion bound because the
	// embedded spec used them unbound (Tekton binds them at run time).
	propagated []string
	warnings   []string
}

func (p *taskPlan) task(spec *v1.PipelineSpec) *v1.PipelineTask {
	if p.finally {
		return &spec.Finally[p.index]
	}
	return &spec.Tasks[p.index]
}

func (p *taskPlan) declaration(taskWorkspace string) *v1.WorkspaceDeclaration {
	for i := range p.spec.Workspaces {
		if p.spec.Workspaces[i].Name == taskWorkspace {
			return &p.spec.Workspaces[i]
		}
	}
	return nil
}

func (p *taskPlan) report() TaskReport {
	r := TaskReport{Name: p.name, Finally: p.finally, Workspaces: p.workspaces, Inlined: p.inlined, Declared: p.declared, Propagated: p.propagated}
	r.PullsFrom = p.producers()
	r.Optional = union(p.workspaces, p.optional)
	for _, ws := range p.workspaces {
		r.Pushes = r.Pushes || p.pushes[ws]
	}
	return r
}

// producers lists every task the plan pulls from, over all its workspaces,
// in pull order.
func (p *taskPlan) producers() []string {
	return union(p.workspaces, p.pullsFrom)
}

// union lists the names of byWorkspace[ws] for each ws in order, each once.
func union(workspaces []string, byWorkspace map[string][]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, ws := range workspaces {
		for _, name := range byWorkspace[ws] {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// planTasks decides, for every task that binds a converted workspace, where
// its spec comes from, what it pulls and whether it pushes. It refuses (an
// *unconvertible error) anything it cannot convert faithfully.
func planTasks(spec *v1.PipelineSpec, converted map[string]bool, resolved Resolved, g *graph) ([]*taskPlan, error) {
	var plans []*taskPlan
	add := func(pts []v1.PipelineTask, finally bool) error {
		for i, pt := range pts {
			bindings := bindingsTo(pt, converted)
			if len(bindings) == 0 {
				continue
			}
			p, err := planTask(pt, bindings, resolved)
			if err != nil {
				return err
			}
			p.finally, p.index = finally, i
			if finally {
				// Nothing runs after a finally task, so what it changes is
				// never read: pushing it would only cost time.
				p.pushes = map[string]bool{}
			}
			plans = append(plans, p)
		}
		return nil
	}
	if err := add(spec.Tasks, false); err != nil {
		return nil, err
	}
	if err := add(spec.Finally, true); err != nil {
		return nil, err
	}

	linkProducers(plans, g, optionalProducers(spec, g))
	for _, p := range plans {
		if err := checkSidecars(p); err != nil {
			return nil, err
		}
	}
	return plans, nil
}

// checkSidecars looks at the sidecars of a task that pulls a converted
// workspace. Tekton starts a task's sidecars with the pod and its steps only
// once every sidecar is ready, so the injected pull, a step, runs after
// them: on the PVC a sidecar sees the ancestors' files from its start,
// converted it sees an empty emptyDir until the pull ran.
//
//   - A sidecar that uses the workspace and has a readiness or startup
//     probe is refused: whether it becomes ready may depend on those files
//     (one that waits for an ancestor's file would hold the pull, and with it
//     the task, until its timeout: outside case sidecar-reads-ancestor-files),
//     and a sidecar that loads the workspace and then says it is ready is
//     the common shape. What it reads cannot be told from the spec.
//   - One that uses it without a probe is converted with a warning: a server
//     that reads files when the steps ask (httpd -h $(workspaces.x.path))
//     sees them, since the steps run after the pull; one that reads at
//     start would not.
//
// "Uses" is the workspace's path variable or mount path anywhere in the
// sidecar, or an isolated workspace binding. Sidecars that do not use the
// workspace (docker:dind, a mock server) are no reason.
func checkSidecars(p *taskPlan) error {
	if len(p.spec.Sidecars) == 0 {
		return nil
	}
	raws := make([]string, len(p.spec.Sidecars)) // each sidecar's JSON, once
	for i, sc := range p.spec.Sidecars {
		raw, err := json.Marshal(sc)
		if err != nil {
			return fmt.Errorf("encoding sidecar %q of task %q: %w", sc.Name, p.name, err)
		}
		raws[i] = string(raw)
	}
	for _, b := range p.bindings {
		ws := pipelineWorkspace(b)
		if len(p.pullsFrom[ws]) == 0 {
			continue
		}
		mountPath := "/workspace/" + b.Name
		if d := p.declaration(b.Name); d != nil && d.MountPath != "" {
			mountPath = d.MountPath
		}
		for i, sc := range p.spec.Sidecars {
			uses := strings.Contains(raws[i], "$(workspaces."+b.Name+".path)") || strings.Contains(raws[i], mountPath)
			for _, w := range sc.Workspaces {
				uses = uses || w.Name == b.Name
			}
			switch {
			case !uses:
			case sc.ReadinessProbe != nil || sc.StartupProbe != nil:
				return refuse(ReasonSidecarUsesWorkspace, "sidecar %q of pipeline task %q uses workspace %q, which the task pulls from %s, and has a probe: Tekton starts sidecars before the injected pull step, so it would start on an empty workspace where on a PVC it sees their files", sc.Name, p.name, ws, strings.Join(p.pullsFrom[ws], ", "))
			default:
				p.warnings = append(p.warnings, fmt.Sprintf("pipeline task %q: sidecar %q uses workspace %q: it sees the files of %s only once the injected pull step ran (after the sidecars started); a sidecar that reads them when it starts would see an empty workspace", p.name, sc.Name, ws, strings.Join(p.pullsFrom[ws], ", ")))
			}
		}
	}
	return nil
}

// linkProducers decides, per workspace, which tasks each task pulls from and
// which of its tasks push at all.
//
// A task pulls from every upstream task that pushes the workspace, whatever
// the subPaths: a subPath may be a symlink inside the workspace that another
// task made (current -> releases/v1), which the kubelet follows on a PVC, so
// which views see which writes is only known at run time. The step resolves
// the views then and skips a delta whose producer's views cannot reach its
// own. Upstream tasks that do not push contribute nothing, and listing them
// would only cost lookups.
func linkProducers(plans []*taskPlan, g *graph, optional map[string]bool) {
	pushers := pushersByWorkspace(plans)
	read := map[string]map[string]bool{} // workspace -> tasks someone pulls from
	for _, p := range plans {
		p.pullsFrom = map[string][]string{}
		p.optional = map[string][]string{}
		for _, ws := range p.workspaces {
			for _, up := range g.upstream(p.name, p.finally) {
				if !pushers[ws][up] {
					continue
				}
				p.pullsFrom[ws] = append(p.pullsFrom[ws], up)
				// A finally task learns each producer's outcome from Tekton
				// at run time instead (producerStatusValue).
				if optional[up] && !p.finally {
					p.optional[ws] = append(p.optional[ws], up)
				}
				if read[ws] == nil {
					read[ws] = map[string]bool{}
				}
				read[ws][up] = true
			}
		}
	}
	// A delta that no later task reads would only cost the task its push.
	for _, p := range plans {
		for ws := range p.pushes {
			p.pushes[ws] = p.pushes[ws] && read[ws][p.name]
		}
	}
}

// pushersByWorkspace returns, per workspace, the tasks (not finally) with a
// writable binding to it: the tasks that may change what later tasks see.
func pushersByWorkspace(plans []*taskPlan) map[string]map[string]bool {
	pushers := map[string]map[string]bool{}
	for _, p := range plans {
		if p.finally {
			continue
		}
		for ws, push := range p.pushes {
			if !push {
				continue
			}
			if pushers[ws] == nil {
				pushers[ws] = map[string]bool{}
			}
			pushers[ws][p.name] = true
		}
	}
	return pushers
}

func planTask(pt v1.PipelineTask, bindings []v1.WorkspacePipelineTaskBinding, resolved Resolved) (*taskPlan, error) {
	p := &taskPlan{name: pt.Name, bindings: bindings, matrixed: pt.IsMatrixed(), pushes: map[string]bool{}}
	switch {
	case pt.PipelineRef != nil || pt.PipelineSpec != nil:
		return nil, refuse(ReasonPipelineInPipe, "pipeline task %q is a pipeline-in-pipeline that binds workspace %q", pt.Name, pipelineWorkspace(bindings[0]))
	case pt.TaskRef != nil && pt.TaskRef.IsCustomTask():
		return nil, refuse(ReasonCustomTask, "pipeline task %q is a custom task (%s %s) that binds workspace %q", pt.Name, pt.TaskRef.APIVersion, pt.TaskRef.Kind, pipelineWorkspace(bindings[0]))
	case pt.TaskSpec != nil && pt.TaskSpec.IsCustomTask():
		return nil, refuse(ReasonCustomTask, "pipeline task %q is a custom task (%s %s) that binds workspace %q", pt.Name, pt.TaskSpec.APIVersion, pt.TaskSpec.Kind, pipelineWorkspace(bindings[0]))
	case pt.TaskRef != nil:
		rt, ok := resolved.Tasks[pt.Name]
		if !ok {
			return nil, refuse(ReasonMissingTask, "the Task of pipeline task %q (%s) was not resolved", pt.Name, describeRef(pt.TaskRef))
		}
		spec, err := withTaskName(*rt.Spec.DeepCopy(), rt.Meta.Name)
		if err != nil {
			return nil, fmt.Errorf("inlining the Task of pipeline task %q: %w", pt.Name, err)
		}
		p.spec = spec
		p.inlined = true
		p.meta = rt.Meta
		src := rt.Source
		p.source = &src
	case pt.TaskSpec != nil:
		p.spec = *pt.TaskSpec.TaskSpec.DeepCopy()
	default:
		return nil, refuse(ReasonInvalidPipeline, "pipeline task %q has neither taskRef nor taskSpec", pt.Name)
	}
	if err := checkTaskReservedNames(pt.Name, &p.spec); err != nil {
		return nil, err
	}

	if err := checkClaimReferences(pt.Name, &p.spec, bindings); err != nil {
		return nil, err
	}
	views := map[string][]view{}
	for _, b := range bindings {
		ws := pipelineWorkspace(b)
		decl := p.declaration(b.Name)
		if decl == nil {
			// Tekton's TaskRun reconciler declares every bound workspace the
			// spec does not (Pipelines-as-Code inlines tasks that way: a
			// `source` binding, `$(workspaces.source.path)` in the steps and
			// no declaration). Declaring it here is the same spec, explicit.
			p.spec.Workspaces = append(p.spec.Workspaces, v1.WorkspaceDeclaration{Name: b.Name})
			p.declared = append(p.declared, b.Name)
			decl = p.declaration(b.Name)
		}
		if !slices.Contains(p.workspaces, ws) {
			p.workspaces = append(p.workspaces, ws)
		}
		if !decl.ReadOnly {
			p.pushes[ws] = true
		}
		for _, other := range views[ws] {
			if (other.writable || !decl.ReadOnly) && overlaps(other.subPath, b.SubPath) {
				// On a PVC both views are one volume and see each other's
				// writes at once; two emptyDirs would not.
				return nil, refuse(ReasonUnsupportedShape, "pipeline task %q binds workspace %q twice with overlapping subPaths %q and %q", pt.Name, ws, other.subPath, b.SubPath)
			}
		}
		views[ws] = append(views[ws], view{subPath: b.SubPath, writable: !decl.ReadOnly})
	}
	return p, nil
}

// view is one binding of a pipeline workspace in a task.
type view struct {
	subPath  string
	writable bool
}

// overlaps reports whether two subPath views of one workspace share files.
// A subPath with a variable is compared by its text: Tekton would substitute
// the same value into both.
func overlaps(a, b string) bool {
	a, b = strings.Trim(a, "/"), strings.Trim(b, "/")
	return a == "" || b == "" || a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

func describeRef(ref *v1.TaskRef) string {
	if ref.Resolver != "" {
		return fmt.Sprintf("resolver %s", ref.Resolver)
	}
	kind := string(ref.Kind)
	if kind == "" {
		kind = "Task"
	}
	return fmt.Sprintf("%s %s", kind, ref.Name)
}

// checkClaimReferences refuses a task that reads the claim name of a
// converted workspace: Tekton substitutes the PVC's name on a PVC and "" on
// an emptyDir, so the task would run with a different value (a script that
// labels, snapshots or mounts the claim by name would break).
func checkClaimReferences(task string, spec *v1.TaskSpec, bindings []v1.WorkspacePipelineTaskBinding) error {
	raw, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("encoding the spec of task %q: %w", task, err)
	}
	for _, b := range bindings {
		if ref := "$(workspaces." + b.Name + ".claim)"; strings.Contains(string(raw), ref) {
			return refuse(ReasonClaimReferenced, "pipeline task %q reads %s, the claim of workspace %q, which an emptyDir does not have", task, ref, pipelineWorkspace(b))
		}
	}
	return nil
}
