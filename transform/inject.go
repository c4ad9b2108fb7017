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
func inject(pt *v1.PipelineTask, p *taskPlan, opts Options) error {
	spec := p.spec // already a copy owned by the plan
	ptParams := []v1.Param{{Name: paramRepository, Value: *v1.NewStructuredValues(opts.repositoryParamValue())}}
	spec.Params = append(spec.Params, v1.ParamSpec{
		Name:        paramRepository,
		Type:        v1.ParamTypeString,
		Description: "Injected by tekton-oci-transport: the run's artifact repository path, without the workspace.",
	})

	// mount is "<task workspace path>=<subPath in the pipeline workspace>".
	mounts := map[string][]string{}         // workspace -> all views
	writableMounts := map[string][]string{} // workspace -> views that push
	usages := map[string][]v1.WorkspaceUsage{}
	for _, b := range p.bindings {
		ws := pipelineWorkspace(b)
		sub := b.SubPath
		if strings.Contains(sub, "$(") {
			// Only the Pipeline level substitutes $(params...) in a subPath:
			// hand the substituted value to the task through a param.
			if !paramSafe(b.Name) {
				return refuse(ReasonUnsupportedShape, "pipeline task %q: workspace %q has a subPath with variables and a name that cannot be used in a param", p.name, b.Name)
			}
			name := paramSubPathPrefix + b.Name
			spec.Params = append(spec.Params, v1.ParamSpec{
				Name:        name,
				Type:        v1.ParamTypeString,
				Description: fmt.Sprintf("Injected by tekton-oci-transport: the subPath of workspace %q.", b.Name),
			})
			ptParams = append(ptParams, v1.Param{Name: name, Value: *v1.NewStructuredValues(sub)})
			sub = fmt.Sprintf("$(params.%s)", name)
		}
		m := fmt.Sprintf("$(workspaces.%s.path)=%s", b.Name, sub)
		mounts[ws] = append(mounts[ws], m)
		decl := p.declaration(b.Name)
		if !decl.ReadOnly {
			writableMounts[ws] = append(writableMounts[ws], m)
		}
		usages[ws] = append(usages[ws], v1.WorkspaceUsage{Name: b.Name})
	}

	isolated := false // Tekton mounts workspaces only into steps that list them
	for _, s := range spec.Steps {
		isolated = isolated || len(s.Workspaces) > 0
	}
	first, last := stepSecurity(&spec)

	var pulls, pushes []v1.Step
	for _, ws := range p.workspaces {
		s := slug(ws, maxSlug)
		common := injectedStep(opts, usages[ws], isolated)
		if from := p.pullsFrom[ws]; len(from) > 0 {
			step := common
			step.Name = pullStepPrefix + s
			step.SecurityContext = first
			step.Args = append(opts.commonArgs("pull"),
				"--repository", fmt.Sprintf("$(params.%s)/%s", paramRepository, ws),
				"--from", strings.Join(from, ","))
			step.Args = append(step.Args, mountArgs(mounts[ws])...)
			step.Args = append(step.Args, "--state", statePath+"/"+s)
			pulls = append(pulls, step)
			p.makeWritable(ws)
		}
		if p.pushes[ws] {
			step := injectedStep(opts, usages[ws], isolated)
			step.Name = pushStepPrefix + s
			step.SecurityContext = last
			step.Args = append(opts.commonArgs("push"),
				"--repository", fmt.Sprintf("$(params.%s)/%s", paramRepository, ws),
				"--tag", p.tag(),
				"--task", p.name)
			step.Args = append(step.Args, mountArgs(writableMounts[ws])...)
			step.Args = append(step.Args, "--state", statePath+"/"+s)
			pushes = append(pushes, step)
		}
	}
	spec.Steps = append(append(pulls, spec.Steps...), pushes...)
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name:         stateVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
	})
	spec.Workspaces = p.spec.Workspaces // makeWritable edited the plan's declarations

	pt.Params = append(pt.Params, ptParams...)
	if p.inlined {
		pt.TaskRef = nil
		pt.TaskSpec = &v1.EmbeddedTask{TaskSpec: spec}
	} else {
		pt.TaskSpec.TaskSpec = spec
	}
	return nil
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

func injectedStep(opts Options, usages []v1.WorkspaceUsage, isolated bool) v1.Step {
	s := v1.Step{
		Image:        opts.StepImage,
		Command:      append([]string(nil), opts.StepCommand...),
		VolumeMounts: []corev1.VolumeMount{{Name: stateVolume, MountPath: statePath}},
	}
	if isolated {
		s.Workspaces = append([]v1.WorkspaceUsage(nil), usages...)
	}
	return s
}

func mountArgs(mounts []string) []string {
	args := make([]string, 0, 2*len(mounts))
	for _, m := range mounts {
		args = append(args, "--mount", m)
	}
	return args
}

// stepSecurity returns the securityContext the pull and push steps run with,
// so they run as the task's own steps do: with a stepTemplate's, nothing (the
// template applies to them too); otherwise the first and the last step's, so
// files are pulled as the first step's user and read back as the last one's.
func stepSecurity(spec *v1.TaskSpec) (first, last *corev1.SecurityContext) {
	if spec.StepTemplate != nil && spec.StepTemplate.SecurityContext != nil {
		return nil, nil
	}
	if len(spec.Steps) == 0 {
		return nil, nil
	}
	return spec.Steps[0].SecurityContext.DeepCopy(), spec.Steps[len(spec.Steps)-1].SecurityContext.DeepCopy()
}
