package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// BenchmarkHandle is the handler's own cost for an inline 13-task run
// (decode, transform, patch), without TLS or the network.
func BenchmarkHandle(b *testing.B) {
	var tasks []v1.PipelineTask
	for i := range 13 {
		pt := v1.PipelineTask{
			Name:       fmt.Sprintf("t%02d", i),
			Workspaces: []v1.WorkspacePipelineTaskBinding{{Name: "src", Workspace: "ws"}},
			TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{
				Workspaces: []v1.WorkspaceDeclaration{{Name: "src"}},
				Steps:      []v1.Step{{Name: "run", Image: "golang", Script: "make -C $(workspaces.src.path)"}},
			}},
		}
		if i > 0 {
			pt.RunAfter = []string{fmt.Sprintf("t%02d", (i-1)/2)}
		}
		tasks = append(tasks, pt)
	}
	run := &v1.PipelineRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "r-", Namespace: "ns", Labels: map[string]string{transform.EnabledLabel: "true"}},
		Spec: v1.PipelineRunSpec{
			PipelineSpec: &v1.PipelineSpec{Workspaces: []v1.PipelineWorkspaceDeclaration{{Name: "ws"}}, Tasks: tasks},
			Workspaces:   []v1.WorkspaceBinding{{Name: "ws", VolumeClaimTemplate: &corev1.PersistentVolumeClaim{}}},
		},
	}
	raw, err := json.Marshal(run)
	if err != nil {
		b.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Group: "tekton.dev", Version: "v1", Kind: "PipelineRun"},
		Resource:  metav1.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"},
		Namespace: "ns", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}}
	h := &webhook.Handler{Options: testOptions, Log: logr.Discard()}
	b.ReportAllocs()
	for b.Loop() {
		if resp := h.Handle(context.Background(), req); len(resp.Patches) == 0 {
			b.Fatal("not converted", resp.Warnings)
		}
	}
}
