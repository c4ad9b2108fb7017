package webhook_test

import (
	"context"
	"encoding/json"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/golden"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/prune"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve/resolvetest"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/webhooktest"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"
)

// testOptions are the options every golden case converts with.
var testOptions = webhooktest.Options

// answer is what want.yaml records: the admission answer and the raw input
// object with the returned patch applied.
type answer struct {
	Allowed            bool           `json:"allowed"`
	Code               int32          `json:"code,omitempty"`
	Message            string         `json:"message,omitempty"`
	Warnings           []string       `json:"warnings,omitempty"`
	Patched            bool           `json:"patched"`
	ResolutionRequests int            `json:"resolutionRequests,omitempty"`
	Object             map[string]any `json:"object,omitempty"`
}

// TestGolden feeds each testdata/<case>/input.yaml (an AdmissionReview) to
// the handler, with cluster.yaml as the objects the API holds and
// resolutions.yaml as what Tekton's resolvers answer, and compares the
// answer and the patched raw object with want.yaml.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*/input.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, input := range inputs {
		dir := filepath.Dir(input)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			got, raw, h, req := runCase(t, dir, "")
			assertNoArtefacts(t, raw, got)
			if got.Patched {
				assertReinvocationIsNoop(t, h, req, got.Object)
			}
			out, err := yaml.Marshal(got)
			require.NoError(t, err)
			golden.Check(t, filepath.Join(dir, "want.yaml"), out, "go test ./webhook -update")
		})
	}
}

// runCase answers the case in dir; mode, when set, replaces its config's.
func runCase(t *testing.T, dir string, mode webhook.Mode) (answer, []byte, *webhook.Handler, admission.Request) {
	t.Helper()
	review := readReview(t, filepath.Join(dir, "input.yaml"))
	req := admission.Request{AdmissionRequest: *review.Request}
	raw := req.Object.Raw

	cfg, err := webhooktest.ReadConfig(filepath.Join(dir, "config.yaml"))
	require.NoError(t, err)
	c := fakeCluster(t, filepath.Join(dir, "cluster.yaml"))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if answers, err := resolvetest.Load(filepath.Join(dir, "resolutions.yaml")); err == nil {
		r := &resolvetest.Resolver{Client: c, Answers: answers}
		go r.Run(ctx, 5*time.Millisecond)
	}
	h := webhooktest.Handler(c, cfg.Strict, cfg.Timeout(), testr.New(t))
	h.Mode = webhook.Mode(cfg.Mode)
	if mode != "" {
		h.Mode = mode
	}
	resp := h.Handle(ctx, req)
	got := answer{Allowed: resp.Allowed, Warnings: resp.Warnings, Patched: len(resp.Patches) > 0}
	if !resp.Allowed && resp.Result != nil {
		got.Code, got.Message = resp.Result.Code, resp.Result.Message
	}
	if got.Patched {
		require.NotNil(t, resp.PatchType)
		got.Object = applyPatch(t, raw, resp)
	} else {
		require.Nil(t, resp.PatchType, "no patch, no patch type")
	}
	// Created by the handler; the resolver deletes them in the background.
	got.ResolutionRequests = c.Created()
	return got, raw, h, req
}

func readReview(t *testing.T, path string) admissionv1.AdmissionReview {
	t.Helper()
	review, err := webhooktest.ReadReview(path)
	require.NoError(t, err)
	return review
}

func applyPatch(t *testing.T, raw []byte, resp admission.Response) map[string]any {
	t.Helper()
	out, err := webhooktest.Apply(raw, resp)
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, json.Unmarshal(out, &obj))
	return obj
}

func fakeCluster(t *testing.T, path string) *webhooktest.Client {
	t.Helper()
	c, err := webhooktest.ClusterFile(path)
	require.NoError(t, err)
	return c
}

// assertNoArtefacts: every null or empty object in the result was in the
// raw input already, or means something (prune.KeepsEmpty: an emptyDir, an
// object param's empty default or properties).
func assertNoArtefacts(t *testing.T, raw []byte, got answer) {
	t.Helper()
	if got.Object == nil {
		return
	}
	var in any
	require.NoError(t, json.Unmarshal(raw, &in))
	var walk func(path, parent, key string, v any)
	walk = func(path, parent, key string, v any) {
		switch tv := v.(type) {
		case nil:
			require.Truef(t, existsIn(in, path), "null leaked in at %s", path)
		case map[string]any:
			if len(tv) == 0 && !prune.KeepsEmpty(parent, key) {
				require.Truef(t, existsIn(in, path), "empty object leaked in at %s", path)
			}
			for k, cv := range tv {
				walk(path+"/"+k, key, k, cv)
			}
		case []any:
			for i, cv := range tv {
				walk(path+"/"+itoa(i), key, "", cv)
			}
		}
	}
	walk("", "", "", got.Object)
}

func existsIn(doc any, path string) bool {
	cur := doc
	for _, part := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if part == "" {
			continue
		}
		switch tv := cur.(type) {
		case map[string]any:
			v, ok := tv[part]
			if !ok {
				return false
			}
			cur = v
		default:
			return false // positions in lists shift: only maps are checked
		}
	}
	return true
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// assertReinvocationIsNoop sends the patched object again, as the API server
// does under reinvocationPolicy IfNeeded: nothing may change.
func assertReinvocationIsNoop(t *testing.T, h *webhook.Handler, req admission.Request, obj map[string]any) {
	t.Helper()
	data, err := json.Marshal(obj)
	require.NoError(t, err)
	req.Object.Raw = data
	resp := h.Handle(context.Background(), req)
	require.True(t, resp.Allowed)
	require.Empty(t, resp.Patches, "a second pass over our own output must change nothing")
}

func TestPanicIsRecoveredAndCounted(t *testing.T) {
	review := readReview(t, "testdata/converted-by-name/input.yaml")
	for _, strict := range []bool{false, true} {
		h := &webhook.Handler{Strict: strict, Options: testOptions, Resolver: panicky{}, Log: testr.New(t)}
		resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: *review.Request})
		require.Equal(t, !strict, resp.Allowed)
		if strict {
			require.NotEqual(t, int32(500), resp.Result.Code, "never a 500")
		} else {
			require.Contains(t, strings.Join(resp.Warnings, "\n"), "internal error")
		}
	}
}

type panicky struct{}

func (panicky) Resolve(context.Context, *v1.PipelineRun, bool) (transform.Resolved, error) {
	panic("boom")
}
