package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

// TestReinvocationLeavesRunUnchanged registers a second webhook, ordered
// after ours, that adds a label and removes our converted-workspaces marker:
// the API server then calls ours again (reinvocationPolicy IfNeeded) with its
// own output without the marker, which must change nothing (no second pull
// or push step, no second conversion).
func TestReinvocationLeavesRunUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	url := startPoker(t)
	poker := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-poker-" + e.ns},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "poker.e2e.test",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: suite.env.WebhookInstallOptions.LocalServingCAData},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"tekton.dev"}, APIVersions: []string{"v1"}, Resources: []string{"pipelineruns"}},
			}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"reinvoke-test": e.ns}},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	require.NoError(t, e.c.Create(ctx, poker))
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), poker) })
	time.Sleep(500 * time.Millisecond) // the API server picks up new configurations asynchronously

	once := e.get(t, e.create(t, "inline-run.yaml", optIn()))
	requireConverted(t, once)

	before := webhookCalls(t)
	got := e.get(t, e.create(t, "inline-run.yaml", map[string]string{transform.EnabledLabel: "true", "reinvoke-test": e.ns}))
	require.Equal(t, "true", got.Labels["poked"], "the second webhook ran")
	require.Equal(t, before+2, webhookCalls(t), "ours was called, then reinvoked")
	require.NotContains(t, got.Annotations, transform.AnnotationConverted, "the reinvocation saw the run without the marker")
	require.Equal(t, once.Spec, got.Spec, "the second pass changed nothing: the spec is the one converted once")
	want := maps.Clone(once.Annotations)
	delete(want, transform.AnnotationConverted)
	require.Equal(t, want, got.Annotations, "nor the annotations (no skipped-reason, no second record)")
}

// startPoker serves a webhook that adds the label poked=true and removes our
// converted-workspaces marker, with envtest's serving certificate.
func startPoker(t *testing.T) string {
	t.Helper()
	dir := suite.env.WebhookInstallOptions.LocalServingCertDir
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	require.NoError(t, err)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(poke), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Log("poker:", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return fmt.Sprintf("https://%s/poke", l.Addr().(*net.TCPAddr).String())
}

func poke(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	var obj struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	_ = json.Unmarshal(review.Request.Object.Raw, &obj)
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if obj.Metadata.Labels["poked"] == "" {
		ops := []map[string]any{{"op": "add", "path": "/metadata/labels/poked", "value": "true"}}
		if _, ok := obj.Metadata.Annotations[transform.AnnotationConverted]; ok {
			ops = append(ops, map[string]any{"op": "remove", "path": "/metadata/annotations/" + strings.ReplaceAll(transform.AnnotationConverted, "/", "~1")})
		}
		resp.Patch, _ = json.Marshal(ops)
		resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
	}
	review.Response, review.Request = resp, nil
	_ = json.NewEncoder(w).Encode(review)
}
