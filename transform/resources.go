package transform

import (
	"fmt"
	"maps"
	"slices"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// validateStepResources: no quantity is negative, and no request exceeds
// its limit (Kubernetes would reject every pod with the injected steps).
func validateStepResources(r corev1.ResourceRequirements) []error {
	var errs []error
	for _, list := range []struct {
		kind string
		rl   corev1.ResourceList
	}{{"request", r.Requests}, {"limit", r.Limits}} {
		for _, name := range slices.Sorted(maps.Keys(list.rl)) {
			if q := list.rl[name]; q.Sign() < 0 {
				errs = append(errs, fmt.Errorf("step %s %s %s is negative", name, list.kind, q.String()))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Requests)) {
		req := r.Requests[name]
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			errs = append(errs, fmt.Errorf("step %s request %s exceeds its limit %s", name, req.String(), lim.String()))
		}
	}
	return errs
}

// stepResources are the computeResources of a task's injected steps: the
// installation's, which Tekton merges with the task's stepTemplate (ours
// win key by key; a key we leave out takes the template's). Where the merge
// would give a step a request above its limit (a template's CPU limit below
// our CPU request, or a template's request above a limit of ours when we set
// no request), the request is lowered to the limit: Kubernetes would reject
// the pod, and a request above the limit could never be used anyway.
func stepResources(spec *v1.TaskSpec, want corev1.ResourceRequirements) corev1.ResourceRequirements {
	r := *want.DeepCopy()
	if spec.StepTemplate == nil {
		return r
	}
	// Tekton's merge writes into its arguments: merge copies.
	merged, err := v1.MergeStepsWithStepTemplate(spec.StepTemplate.DeepCopy(), []v1.Step{{ComputeResources: *r.DeepCopy()}})
	if err != nil || len(merged) != 1 {
		return r // Tekton fails such a run itself
	}
	eff := merged[0].ComputeResources
	for _, name := range slices.Sorted(maps.Keys(eff.Limits)) {
		lim := eff.Limits[name]
		if req, ok := eff.Requests[name]; ok && req.Cmp(lim) > 0 {
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[name] = lim.DeepCopy()
		}
	}
	return r
}
