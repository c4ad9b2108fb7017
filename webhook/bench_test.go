package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/webhooktest"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// benchRequest is the admission request of an inline 13-task run.
func benchRequest(b *testing.B) admission.Request {
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
	return createRequest(b, run)
}

// releaseRequest is the admission request make bench-webhook sends
// (test/e2e/load_test.go, reviewBody): a release-like DAG of 12 tasks and a
// finally task, each with a param, a subPath binding and two steps.
func releaseRequest(b *testing.B) admission.Request {
	return createRequest(b, webhooktest.ReleaseRun("ns"))
}

// createRequest is the CREATE admission request of run (namespace ns).
func createRequest(b *testing.B, run *v1.PipelineRun) admission.Request {
	raw, err := json.Marshal(run)
	if err != nil {
		b.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "bench",
		Kind:      metav1.GroupVersionKind{Group: "tekton.dev", Version: "v1", Kind: "PipelineRun"},
		Resource:  metav1.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"},
		Namespace: "ns", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}}
}

// BenchmarkHandle is the handler's own cost for an inline 13-task run
// (decode, transform, patch), without TLS or the network.
func BenchmarkHandle(b *testing.B) { benchHandle(b, benchRequest(b)) }

// BenchmarkHandleRelease is BenchmarkHandle for the run make bench-webhook
// sends.
func BenchmarkHandleRelease(b *testing.B) { benchHandle(b, releaseRequest(b)) }

func benchHandle(b *testing.B, req admission.Request) {
	h := &webhook.Handler{Options: testOptions, Log: logr.Discard()}
	b.ReportAllocs()
	for b.Loop() {
		if resp := h.Handle(context.Background(), req); len(resp.Patches) == 0 {
			b.Fatal("not converted", resp.Warnings)
		}
	}
}

// BenchmarkServeHTTP is what the webhook server does per admission of the
// same run, but TLS: controller-runtime decodes the AdmissionReview, the
// handler answers, the response (the patch, base64) is encoded.
func BenchmarkServeHTTP(b *testing.B) { benchServeHTTP(b, benchRequest(b)) }

// BenchmarkServeHTTPRelease is BenchmarkServeHTTP for the run make
// bench-webhook sends.
func BenchmarkServeHTTPRelease(b *testing.B) { benchServeHTTP(b, releaseRequest(b)) }

func benchServeHTTP(b *testing.B, req admission.Request) {
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := &crwebhook.Admission{Handler: &webhook.Handler{Options: testOptions, Log: logr.Discard()}}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"patch":"`)) {
			b.Fatalf("not converted (%d): %.300s", w.Code, w.Body.String())
		}
	}
}
