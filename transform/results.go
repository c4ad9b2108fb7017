package transform

import (
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// Tekton returns a task's results through its steps' termination messages
// (unless the cluster sets results-from: sidecar-logs), and the kubelet
// keeps at most 12 KiB of termination messages per pod, split evenly among
// all its containers and init containers (pkg/kubelet/status,
// normalizeStatus). Every injected step is one more container, so each step
// gets a smaller share: a result that fit on the PVC may be cut and the run
// fail. The injected steps write no results of their own; the warning says
// what share is left.
const (
	podTerminationMessageBytes       = 12 * 1024
	containerTerminationMessageBytes = 4 * 1024 // and at most this per container
)

// terminationShare is each container's share of a pod with n containers.
func terminationShare(n int) int {
	return min(containerTerminationMessageBytes, podTerminationMessageBytes/n)
}

// resultsBudgetWarning warns when the injected steps shrink the share of a
// task that returns results; "" when it returns none or the share stays.
func resultsBudgetWarning(name string, spec *v1.TaskSpec, injected int) string {
	if injected == 0 || !returnsResults(spec) {
		return ""
	}
	n := podContainers(spec) - injected
	before, after := terminationShare(n), terminationShare(n+injected)
	if after == before {
		return ""
	}
	return fmt.Sprintf("task %q returns results through termination messages, which Kubernetes caps at 12 KiB per pod split among its containers: "+
		"the %d injected step(s) lower each step's share from about %d to %d bytes, so a larger result fails the run "+
		"(Tekton's feature flag results-from: sidecar-logs lifts this limit)",
		name, injected, before, after)
}

func returnsResults(spec *v1.TaskSpec) bool {
	if len(spec.Results) > 0 {
		return true
	}
	for _, s := range spec.Steps {
		if len(s.Results) > 0 {
			return true
		}
	}
	return false
}

// podContainers estimates the containers of the task's pod: its steps and
// sidecars, and the init containers Tekton adds (prepare, always;
// place-scripts for scripts; working-dir-initializer for workingDirs).
func podContainers(spec *v1.TaskSpec) int {
	n := len(spec.Steps) + len(spec.Sidecars) + 1
	scripts, workingDirs := false, false
	for _, s := range spec.Steps {
		scripts = scripts || s.Script != ""
		workingDirs = workingDirs || s.WorkingDir != ""
	}
	for _, s := range spec.Sidecars {
		scripts = scripts || s.Script != ""
	}
	if scripts {
		n++
	}
	if workingDirs {
		n++
	}
	return n
}
