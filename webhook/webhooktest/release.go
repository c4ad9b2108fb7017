package webhooktest

import (
	"fmt"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReleaseRun is the run the admission benchmarks and `make bench-webhook`
// send: a release-like DAG of 12 inline tasks (clone, fan-out to builds and
// tests, fan-in to publish) and a finally task, each with a param, a
// subPath binding and two steps, opted in, in namespace ns.
func ReleaseRun(ns string) *v1.PipelineRun {
	dag := []struct {
		name  string
		after []string
	}{
		{"clone", nil},
		{"lint", []string{"clone"}}, {"unit-test", []string{"clone"}}, {"build-linux", []string{"clone"}},
		{"build-darwin", []string{"clone"}}, {"build-windows", []string{"clone"}},
		{"e2e-test", []string{"build-linux"}}, {"sbom", []string{"build-linux", "build-darwin", "build-windows"}},
		{"sign", []string{"sbom"}}, {"publish", []string{"sign", "e2e-test", "unit-test", "lint"}},
		{"release-notes", []string{"publish"}}, {"announce", []string{"release-notes"}},
	}
	var tasks []v1.PipelineTask
	for _, n := range dag {
		tasks = append(tasks, releaseTask(n.name, n.after))
	}
	return &v1.PipelineRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "release-", Namespace: ns,
			Labels: map[string]string{transform.EnabledLabel: "true"}},
		Spec: v1.PipelineRunSpec{
			Params: v1.Params{{Name: "revision", Value: *v1.NewStructuredValues("v1.2.3")}},
			PipelineSpec: &v1.PipelineSpec{
				Params:     v1.ParamSpecs{{Name: "revision", Type: v1.ParamTypeString}},
				Workspaces: []v1.PipelineWorkspaceDeclaration{{Name: "workarea"}},
				Tasks:      tasks,
				Finally:    []v1.PipelineTask{releaseTask("cleanup", nil)},
			},
			Workspaces: []v1.WorkspaceBinding{{Name: "workarea", VolumeClaimTemplate: &corev1.PersistentVolumeClaim{
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
			}}},
		},
	}
}

func releaseTask(name string, after []string) v1.PipelineTask {
	return v1.PipelineTask{
		Name:       name,
		RunAfter:   after,
		Params:     v1.Params{{Name: "revision", Value: *v1.NewStructuredValues("$(params.revision)")}},
		Workspaces: []v1.WorkspacePipelineTaskBinding{{Name: "source", Workspace: "workarea", SubPath: "src"}},
		TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{
			Params:     v1.ParamSpecs{{Name: "revision", Type: v1.ParamTypeString}},
			Workspaces: []v1.WorkspaceDeclaration{{Name: "source"}},
			Steps: []v1.Step{
				{Name: "run", Image: "golang:1.26", Script: fmt.Sprintf("cd $(workspaces.source.path)\nmake %s REVISION=$(params.revision)\n", name)},
				{Name: "check", Image: "busybox", Script: "ls -la $(workspaces.source.path)"},
			},
		}},
	}
}
