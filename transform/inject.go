package transform

import (
	"fmt"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// maxSlug keeps "oci-transport-pull-" + slug within a 63-character DNS label.
const maxSlug = 63 - len(pullStepPrefix)

// inject rewrites one PipelineTask as planned: the task spec is inlined,
// gets the params, state volume and pull/push steps it needs, and the
// PipelineTask passes the run-time values in through params.
func inject(pt *v1.PipelineTask, p *taskPlan, opts Options, pipelineParams map[string]bool) error {
	var scoped []v1.Param
	if p.inlined {
		var err error
		if scoped, err = scopeParams(pt, &p.spec, pipelineParams); err != nil {
			return err
		}
	}
	in := &injection{spec: p.spec} // p.spec is already a copy owned by the plan
	b := stepBuilder{opts: opts, isolated: hasIsolatedSteps(&in.spec)}
	b.first, b.last = stepSecurity(&in.spec)
	b.resources = stepResources(&in.spec, opts.StepResources)
	b.repository = in.param(paramRepository, opts.repositoryParamValue(),
		"the run's artifact repository path, without the workspace.")
	views, err := in.bindViews(p)
	if err != nil {
		return err
	}
	b.status = in.producerStatus(p)

	var pulls, pushes []v1.Step
	for _, ws := range p.workspaces {
		if len(p.pullsFrom[ws]) > 0 {
			pulls = append(pulls, b.pull(p, ws, views[ws]))
			p.makeWritable(ws)
		}
		if p.pushes[ws] {
			pushes = append(pushes, b.push(p, ws, views[ws]))
		}
	}
	spec := in.spec
	spec.Steps = append(append(pulls, spec.Steps...), pushes...)
	if w := resultsBudgetWarning(p.name, &spec, len(pulls)+len(pushes)); w != "" {
		if opts.ResultsBudget == ResultsBudgetUnchanged {
			return refuse(ReasonResultsBudget, "%s; the installation leaves such runs unchanged (--results-budget=unchanged)", w)
		}
		p.warnings = append(p.warnings, w)
	}
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name:         stateVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	})
	if opts.RegistryTokenAudience != "" {
		spec.Volumes = append(spec.Volumes, opts.tokenVolumeFor())
	}
	spec.Workspaces = p.spec.Workspaces // makeWritable edited the plan's declarations

	pt.Params = append(append(pt.Params, scoped...), in.ptParams...)
	if p.inlined {
		pt.TaskRef = nil
		pt.TaskSpec = &v1.EmbeddedTask{TaskSpec: spec, Metadata: taskMetadata(p.meta)}
	} else {
		pt.TaskSpec.TaskSpec = spec
	}
	return nil
}

// stepBuilder makes the pull and push steps of one task.
type stepBuilder struct {
	opts        Options
	repository  string // $(params.oci-transport-repository)
	status      string // $(params.oci-transport-producer-status), finally tasks only
	isolated    bool   // Tekton mounts workspaces only into steps that list them
	first, last *corev1.SecurityContext
	resources   corev1.ResourceRequirements
}

// pull is the first step for workspace ws: it applies, in order, the deltas
// of the tasks the plan pulls from into every view of ws.
func (b stepBuilder) pull(p *taskPlan, ws string, views []stepView) v1.Step {
	args := append(b.opts.commonArgs("pull"), "--repository", b.repository+"/"+RepositoryComponent(ws),
		"--from", strings.Join(p.pullsFrom[ws], ","))
	args = append(args, producerArgs(p.optional[ws], b.status)...)
	args = append(args, viewArgs(views, false)...)
	return b.step(pullStepPrefix, ws, b.first, views, args)
}

// push is the last step for workspace ws: it pushes what the task changed
// through its writable views of ws.
func (b stepBuilder) push(p *taskPlan, ws string, views []stepView) v1.Step {
	args := append(b.opts.commonArgs("push"), "--repository", b.repository+"/"+RepositoryComponent(ws),
		"--tag", p.tag(), "--task", p.name)
	args = append(args, viewArgs(views, true)...)
	return b.step(pushStepPrefix, ws, b.last, views, args)
}

// step is an injected step: the step binary with args, and the state
// volume where the pull step leaves its baseline for the push step. It runs
// with the securityContext the task's own steps run with, and with the
// installation's computeResources (stepResources).
func (b stepBuilder) step(prefix, ws string, security *corev1.SecurityContext, views []stepView, args []string) v1.Step {
	s := RepositoryComponent(ws)
	step := v1.Step{
		Name:             prefix + s,
		Image:            b.opts.StepImage,
		Command:          append([]string(nil), b.opts.StepCommand...),
		Args:             append(args, "--state", statePath+"/"+s),
		SecurityContext:  security.DeepCopy(),
		ComputeResources: *b.resources.DeepCopy(),
		VolumeMounts:     []corev1.VolumeMount{{Name: stateVolume, MountPath: statePath}},
	}
	if b.opts.RegistryTokenAudience != "" {
		step.VolumeMounts = append(step.VolumeMounts, corev1.VolumeMount{Name: tokenVolume, MountPath: tokenPath, ReadOnly: true})
	}
	if b.isolated {
		step.Workspaces = workspaceUsages(views)
	}
	return step
}

// injection is what inject adds to one task: its spec, and the params the
// PipelineTask sets because only the Pipeline level can resolve their values.
type injection struct {
	spec     v1.TaskSpec
	ptParams []v1.Param
}

// param declares a string param on the task, has the PipelineTask set it to
// value and returns the reference a step uses.
func (in *injection) param(name, value, description string) string {
	in.spec.Params = append(in.spec.Params, v1.ParamSpec{
		Name:        name,
		Type:        v1.ParamTypeString,
		Description: "Injected by tekton-oci-transport: " + description,
	})
	in.ptParams = append(in.ptParams, v1.Param{Name: name, Value: *v1.NewStructuredValues(value)})
	return fmt.Sprintf("$(params.%s)", name)
}

// stepView is one binding of a converted workspace as the injected steps see
// it: where Tekton mounts it in the task, and its subPath in the pipeline
// workspace ("" for the root).
type stepView struct {
	binding  string // the task workspace name
	dir      string
	subPath  string
	writable bool
}

// bindViews returns, per pipeline workspace, the task's views of it in
// binding order.
func (in *injection) bindViews(p *taskPlan) (map[string][]stepView, error) {
	views := map[string][]stepView{}
	for _, b := range p.bindings {
		sub, err := in.subPath(p.name, b)
		if err != nil {
			return nil, err
		}
		ws := pipelineWorkspace(b)
		views[ws] = append(views[ws], stepView{
			binding:  b.Name,
			dir:      fmt.Sprintf("$(workspaces.%s.path)", b.Name),
			subPath:  sub,
			writable: !p.declaration(b.Name).ReadOnly,
		})
	}
	return views, nil
}

// subPath is a binding's subPath as a step can read it. Only the Pipeline
// level substitutes $(params...) in a subPath, so one with variables is
// handed to the task through a param.
func (in *injection) subPath(task string, b v1.WorkspacePipelineTaskBinding) (string, error) {
	if !strings.Contains(b.SubPath, "$(") {
		return b.SubPath, nil
	}
	if !paramSafe(b.Name) {
		return "", refuse(ReasonUnsupportedShape, "pipeline task %q: workspace %q has a subPath with variables and a name that cannot be used in a param", task, b.Name)
	}
	return in.param(paramSubPathPrefix+b.Name, b.SubPath,
		fmt.Sprintf("the subPath of workspace %q.", b.Name)), nil
}

// producerStatus gives a finally task that pulls the run-time status of
// every task it pulls from, through a param (only the Pipeline level can
// read $(tasks.<name>.status)), and returns the reference its pull steps
// pass as --status. It returns "" for any other task.
func (in *injection) producerStatus(p *taskPlan) string {
	producers := p.producers()
	if !p.finally || len(producers) == 0 {
		return ""
	}
	return in.param(paramProducerStatus, producerStatusValue(producers),
		"the status of each task this one pulls from, as name=status pairs.")
}

// producerStatusValue is "a=$(tasks.a.status),b=$(tasks.b.status)". Tekton
// substitutes Succeeded, Failed or None (skipped, not run) when it starts a
// finally task; the step requires the delta of a producer that Succeeded
// and takes any other's as optional. Task names are DNS labels, so neither
// "=" nor "," can occur in one.
func producerStatusValue(producers []string) string {
	pairs := make([]string, len(producers))
	for i, name := range producers {
		pairs[i] = fmt.Sprintf("%s=$(tasks.%s.status)", name, name)
	}
	return strings.Join(pairs, ",")
}

// producerArgs tell the pull step which producers' deltas may be missing:
// --optional for a task (decided at admission), --status for a finally task
// (decided by Tekton at run time).
func producerArgs(optional []string, status string) []string {
	var args []string
	if len(optional) > 0 {
		args = append(args, "--optional", strings.Join(optional, ","))
	}
	if status != "" {
		args = append(args, "--status", status)
	}
	return args
}

// viewArgs are the step flags for views: "--mount DIR", then "--subpath SUB"
// unless the view is the workspace root. Two flags, not one "DIR=SUB": a
// subPath may itself contain "=" (out/GOOS=linux). With onlyWritable, the
// readOnly views are left out: a push never sends what was written there.
func viewArgs(views []stepView, onlyWritable bool) []string {
	var args []string
	for _, v := range views {
		if onlyWritable && !v.writable {
			continue
		}
		args = append(args, "--mount", v.dir)
		if v.subPath != "" {
			args = append(args, "--subpath", v.subPath)
		}
	}
	return args
}

// workspaceUsages are what an injected step lists when the task isolates
// workspaces to the steps that list them.
func workspaceUsages(views []stepView) []v1.WorkspaceUsage {
	usages := make([]v1.WorkspaceUsage, 0, len(views))
	for _, v := range views {
		usages = append(usages, v1.WorkspaceUsage{Name: v.binding})
	}
	return usages
}

// hasIsolatedSteps reports whether any step lists workspaces: Tekton then
// mounts a workspace only into the steps that list it.
func hasIsolatedSteps(spec *v1.TaskSpec) bool {
	for _, s := range spec.Steps {
		if len(s.Workspaces) > 0 {
			return true
		}
	}
	return false
}

// makeWritable lifts readOnly from the task's declarations of ws. Tekton
// mounts a readOnly workspace read-only into every step, the pull step
// included, so the pull could not write the files the task must see. The
// task still never pushes through a readOnly binding, so nothing it writes
// there reaches another task.
func (p *taskPlan) makeWritable(ws string) {
	for _, b := range p.bindings {
		if pipelineWorkspace(b) != ws {
			continue
		}
		if decl := p.declaration(b.Name); decl.ReadOnly {
			decl.ReadOnly = false
			p.warnings = append(p.warnings, fmt.Sprintf(
				"task %q: readOnly workspace %q is mounted writable so its pull step can fill it; writes to it are not pushed", p.name, b.Name))
		}
	}
}

// tag is the tag this task's delta is pushed under. Every matrix instance
// pushes its own (the TaskRun name tells them apart); pullers take the task's
// name and every "<name>." tag.
func (p *taskPlan) tag() string {
	if p.matrixed {
		return p.name + ".$(context.taskRun.name)"
	}
	return p.name
}

// stepSecurity returns the securityContext the pull and push steps run with.
// They must read and write whatever the task's own steps can: when a step
// runs as root (runAsUser 0, on the step or from the stepTemplate), both run
// with that step's context, so the push can scan a 0700 directory a root
// step made and the pull restores owners as they were on the PVC. Otherwise
// they run as the task's own steps do: with a stepTemplate's context,
// nothing (the template applies to them too); else the first and the last
// step's, so files are pulled as the first step's user and read back as the
// last one's. (Two different non-root users cannot read each other's 0700
// directories on a PVC either.)
func stepSecurity(spec *v1.TaskSpec) (first, last *corev1.SecurityContext) {
	if root := rootStepSecurity(spec); root != nil {
		return root, root.DeepCopy()
	}
	if spec.StepTemplate != nil && spec.StepTemplate.SecurityContext != nil {
		return nil, nil
	}
	if len(spec.Steps) == 0 {
		return nil, nil
	}
	return spec.Steps[0].SecurityContext.DeepCopy(), spec.Steps[len(spec.Steps)-1].SecurityContext.DeepCopy()
}

// rootStepSecurity is the effective securityContext (the stepTemplate merged
// in, by Tekton's own merge) of the first step that runs as root, or nil.
func rootStepSecurity(spec *v1.TaskSpec) *corev1.SecurityContext {
	steps := spec.Steps
	if spec.StepTemplate == nil {
		// Tekton's merge returns the steps as they are: no copies needed.
		return rootSecurity(steps)
	}
	// Tekton's merge writes into the steps it is given: merge copies.
	steps = make([]v1.Step, len(spec.Steps))
	for i := range spec.Steps {
		steps[i] = *spec.Steps[i].DeepCopy()
	}
	steps, err := v1.MergeStepsWithStepTemplate(spec.StepTemplate.DeepCopy(), steps)
	if err != nil {
		steps = spec.Steps // Tekton fails such a run itself: judge the steps as written
	}
	return rootSecurity(steps)
}

// rootSecurity is a copy of the securityContext of the first of steps that
// runs as root, or nil.
func rootSecurity(steps []v1.Step) *corev1.SecurityContext {
	for i := range steps {
		if sc := steps[i].SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			return sc.DeepCopy()
		}
	}
	return nil
}
