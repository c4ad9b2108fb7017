package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"
)

// warnings collects the Warning headers the API server relays from webhooks.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.list, "\n")
}

// env is one test's namespace and a client that records warnings.
type env struct {
	ns       string
	c        client.Client
	warnings *warnings
}

func newEnv(t *testing.T, nsLabels map[string]string) *env {
	t.Helper()
	need(t)
	w := &warnings{}
	cfg := rest.CopyConfig(suite.cfg)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: suite.scheme})
	require.NoError(t, err)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + strings.ToLower(rand.String(6)), Labels: nsLabels}}
	require.NoError(t, c.Create(context.Background(), ns))
	return &env{ns: ns.Name, c: c, warnings: w}
}

// load reads a fixture and puts it in the test's namespace.
func (e *env) load(t *testing.T, file string) client.Object {
	t.Helper()
	data, err := readFixture(file)
	require.NoError(t, err)
	obj, err := decode.Object(data)
	require.NoError(t, err)
	co := obj.(client.Object)
	co.SetNamespace(e.ns)
	return co
}

func readFixture(file string) ([]byte, error) {
	return readFile("testdata/" + file)
}

// run creates the run in file (a v1 PipelineRun) with labels and returns
// what the API server stored.
func (e *env) create(t *testing.T, file string, labels map[string]string, opts ...client.CreateOption) *v1.PipelineRun {
	t.Helper()
	run := e.load(t, file).(*v1.PipelineRun)
	for k, v := range labels {
		if run.Labels == nil {
			run.Labels = map[string]string{}
		}
		run.Labels[k] = v
	}
	require.NoError(t, e.c.Create(context.Background(), run, opts...))
	return run
}

func (e *env) get(t *testing.T, run *v1.PipelineRun) *v1.PipelineRun {
	t.Helper()
	got := &v1.PipelineRun{}
	require.NoError(t, e.c.Get(context.Background(), client.ObjectKeyFromObject(run), got))
	return got
}

// optIn returns a fresh label map (decoding a response merges into maps).
func optIn() map[string]string { return map[string]string{transform.EnabledLabel: "true"} }

func requireConverted(t *testing.T, run *v1.PipelineRun) {
	t.Helper()
	require.Contains(t, run.Annotations, transform.AnnotationConverted, "run should be converted; annotations: %v", run.Annotations)
	for _, w := range run.Spec.Workspaces {
		require.Nil(t, w.VolumeClaimTemplate, "workspace %s still has a volumeClaimTemplate", w.Name)
	}
	require.NotNil(t, run.Spec.PipelineSpec)
	require.Nil(t, run.Spec.PipelineRef)
}

func requireUntouched(t *testing.T, run *v1.PipelineRun) {
	t.Helper()
	require.NotContains(t, run.Annotations, transform.AnnotationConverted)
	require.NotContains(t, run.Annotations, transform.AnnotationSkippedReason)
	require.NotNil(t, run.Spec.Workspaces[0].VolumeClaimTemplate)
}

// webhookCalls is how often the API server called our webhook path, from
// controller-runtime's own webhook metrics (the servers run in this process).
func webhookCalls(t *testing.T) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "webhook") == registration.Path {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestInlineRunConverted(t *testing.T) {
	e := newEnv(t, nil)
	run := e.create(t, "inline-run.yaml", optIn())
	got := e.get(t, run)
	requireConverted(t, got)
	require.NotNil(t, got.Spec.Workspaces[0].EmptyDir)
	require.Equal(t, "ci", got.Spec.TaskRunTemplate.ServiceAccountName)
}

func TestByNameRefsConverted(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	require.NoError(t, e.c.Create(ctx, e.load(t, "task-make.yaml")))
	require.NoError(t, e.c.Create(ctx, e.load(t, "pipeline-build.yaml")))
	// Created right after its Task and Pipeline (kubectl apply -f dir/): the
	// informer may not have them yet, and the webhook asks the API server.
	got := e.get(t, e.create(t, "by-name-run.yaml", optIn()))
	requireConverted(t, got)
	var sources map[string]any
	require.NoError(t, json.Unmarshal([]byte(got.Annotations[transform.AnnotationSources]), &sources))
	require.Contains(t, got.Annotations[transform.AnnotationSources], `"name":"build-and-test"`)

	// A dry run served without creating anything is converted too.
	dry := e.load(t, "by-name-run.yaml").(*v1.PipelineRun)
	dry.Labels = optIn()
	require.NoError(t, e.c.Create(ctx, dry, client.DryRunAll))
	require.Contains(t, dry.Annotations, transform.AnnotationConverted)
	for _, pt := range got.Spec.PipelineSpec.Tasks {
		if pt.Name == "build" || pt.Name == "test" {
			require.Nil(t, pt.TaskRef, "task %s should be inlined", pt.Name)
			require.NotNil(t, pt.TaskSpec)
		}
	}
}

func TestResolverRefsConverted(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	require.NoError(t, e.c.Create(ctx, e.load(t, "task-publish.yaml")))
	require.Eventually(t, func() bool {
		// the cluster resolver's own-namespace task comes from the cache
		return e.c.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "publish"}, &v1.Task{}) == nil
	}, 5*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // informer catch-up for the cluster-resolver task

	got := e.get(t, e.create(t, "release-run.yaml", optIn()))
	require.Empty(t, suite.resolver.Errors())
	requireConverted(t, got)
	src := got.Annotations[transform.AnnotationSources]
	require.Contains(t, src, `"resolver":"git"`)
	require.Contains(t, src, `"revision":"v1.2.3"`, "resolver params are substituted from the run's params")
	require.Contains(t, src, `"sha1":"4f1e0c0ffee0000000000000000000000000beef"`, "refSource is recorded")
	require.Contains(t, src, `"version":"0.9"`, "pipeline defaults are substituted")
	require.Contains(t, src, `"resolver":"hub"`)
	require.Contains(t, src, `"resolver":"bundles"`)

	// The requests were answered and then removed by the webhook.
	require.Eventually(t, func() bool {
		var list resolutionv1beta1.ResolutionRequestList
		require.NoError(t, e.c.List(ctx, &list, client.InNamespace(e.ns)))
		return len(list.Items) == 0
	}, 10*time.Second, 100*time.Millisecond)
	seen := 0
	for _, rr := range suite.resolver.Seen() {
		if rr.Namespace == e.ns {
			seen++
			require.Equal(t, resolve.ManagedBy, rr.Labels[resolve.LabelManagedBy])
		}
	}
	require.Equal(t, 3, seen, "git pipeline, hub and bundles tasks; the cluster task came from the cache")
}

func TestUnlabelledRunUntouchedAndWebhookNotCalled(t *testing.T) {
	e := newEnv(t, nil)
	before := webhookCalls(t)
	got := e.get(t, e.create(t, "inline-run.yaml", nil))
	requireUntouched(t, got)
	require.Equal(t, before, webhookCalls(t), "the selectors keep the API server from calling the webhook")
}

func TestNamespaceOptIn(t *testing.T) {
	e := newEnv(t, optIn())
	got := e.get(t, e.create(t, "inline-run.yaml", nil))
	requireConverted(t, got)
}

func TestRunOptOut(t *testing.T) {
	e := newEnv(t, optIn())
	before := webhookCalls(t)
	got := e.get(t, e.create(t, "inline-run.yaml", map[string]string{transform.EnabledLabel: "false"}))
	requireUntouched(t, got)
	require.Equal(t, before, webhookCalls(t))
}

func TestResolutionTimeoutLeavesRunUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	start := time.Now()
	run := e.create(t, "slow-run.yaml", optIn())
	took := time.Since(start)
	got := e.get(t, run)
	require.NotContains(t, got.Annotations, transform.AnnotationConverted)
	require.Contains(t, got.Annotations[transform.AnnotationSkippedReason], string(resolve.ReasonTimeout))
	require.NotNil(t, got.Spec.Workspaces[0].VolumeClaimTemplate, "the run keeps its PVC")
	require.Contains(t, e.warnings.all(), "left unchanged")
	require.Less(t, took, time.Duration(registration.TimeoutSeconds(resolutionTimeout))*time.Second, "answered within the webhook timeout")
}

func TestStrictModeDenies(t *testing.T) {
	e := newEnv(t, nil)
	run := e.load(t, "custom-task-run.yaml").(*v1.PipelineRun)
	run.Labels = map[string]string{strictLabel: "true"}
	err := e.c.Create(context.Background(), run)
	require.Error(t, err)
	require.Contains(t, err.Error(), string(transform.ReasonCustomTask))
}

func TestDryRunCreatesNoResolutionRequest(t *testing.T) {
	e := newEnv(t, nil)
	run := e.create(t, "release-run.yaml", optIn(), client.DryRunAll)
	require.NotContains(t, run.Annotations, transform.AnnotationSkippedReason, "a dry run is no verdict on the run")
	require.Contains(t, e.warnings.all(), string(resolve.ReasonDryRun))
	time.Sleep(300 * time.Millisecond) // longer than the test resolver's poll
	for _, rr := range suite.resolver.Seen() {
		require.NotEqual(t, e.ns, rr.Namespace, "a dry run must not create a ResolutionRequest")
	}
	var list resolutionv1beta1.ResolutionRequestList
	require.NoError(t, e.c.List(context.Background(), &list, client.InNamespace(e.ns)))
	require.Empty(t, list.Items)
}

func TestUnknownFieldSurvives(t *testing.T) {
	e := newEnv(t, nil)
	data, err := readFixture("inline-run.yaml")
	require.NoError(t, err)
	u := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal(data, &u.Object))
	u.SetNamespace(e.ns)
	u.SetLabels(optIn())
	// Without a taskRunTemplate, where the typed round trip adds
	// `taskRunTemplate: {}` and a patch from it would too.
	unstructured.RemoveNestedField(u.Object, "spec", "taskRunTemplate")
	require.NoError(t, unstructured.SetNestedField(u.Object, "kept", "spec", futureField))
	require.NoError(t, unstructured.SetNestedField(u.Object, map[string]any{"x": int64(1)}, "spec", "pipelineSpec", "futurePipelineField"))
	require.NoError(t, e.c.Create(context.Background(), u))

	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(u.GroupVersionKind())
	require.NoError(t, e.c.Get(context.Background(), client.ObjectKeyFromObject(u), got))
	v, _, _ := unstructured.NestedString(got.Object, "spec", futureField)
	require.Equal(t, "kept", v)
	x, _, _ := unstructured.NestedInt64(got.Object, "spec", "pipelineSpec", "futurePipelineField", "x")
	require.Equal(t, int64(1), x)
	require.Contains(t, got.GetAnnotations(), transform.AnnotationConverted)
	_, found, _ := unstructured.NestedMap(got.Object, "spec", "taskRunTemplate")
	require.False(t, found, "no taskRunTemplate: {} leaks in")
}

func TestV1beta1RunConverted(t *testing.T) {
	e := newEnv(t, nil)
	data, err := readFixture("v1beta1-run.yaml")
	require.NoError(t, err)
	u := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal(data, &u.Object))
	u.SetNamespace(e.ns)
	u.SetLabels(optIn())
	require.NoError(t, e.c.Create(context.Background(), u))
	got := e.get(t, &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: u.GetName()}})
	requireConverted(t, got)
}

func TestHealthAndMetrics(t *testing.T) {
	need(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		require.NoError(t, waitReady(context.Background(), "http://"+suite.healthAddr+path, time.Second))
	}
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, n := range []string{"controller_runtime_webhook_requests_total", "oci_transport_admissions_total", "oci_transport_admission_duration_seconds"} {
		require.True(t, names[n], "metric %s", n)
	}
}
