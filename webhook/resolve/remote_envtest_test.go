package resolve_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve/resolvetest"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Remote resolution against a real kube-apiserver with Tekton's CRDs and a
// stand-in resolver that answers git requests only: a resolver nobody runs
// fails within the pickup timeout instead of the deadline, a resolver of
// Tekton's turned off by its feature flag fails at once without a request,
// and one that Tekton's controller marks in progress is waited for.
func TestRemoteResolverPickup(t *testing.T) {
	testenv.Require(t, "KUBEBUILDER_ASSETS", "remote resolution is tested against kube-apiserver and etcd (hack/tools.sh envtest)")
	crds, err := testenv.TektonCRDs()
	require.NoError(t, err)
	env := &envtest.Environment{CRDs: crds, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, v1.AddToScheme(scheme))
	require.NoError(t, resolutionv1beta1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range []string{"runs", "slow", resolve.DefaultResolversNamespace} {
		require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}

	pipeline := map[string]any{"apiVersion": "tekton.dev/v1", "kind": "Pipeline", "metadata": map[string]any{"name": "build"},
		"spec": map[string]any{"tasks": []any{map[string]any{"name": "build", "taskSpec": map[string]any{
			"steps": []any{map[string]any{"name": "s", "image": "busybox", "script": "true"}}}}}}}
	standIn := &resolvetest.Resolver{Client: c, Types: []string{"git"}, Answers: []resolvetest.Answer{
		{Resolver: "git", Params: map[string]string{"url": "https://example.com/r.git", "pathInRepo": "build.yaml"}, Object: pipeline,
			RefSource: &v1.RefSource{URI: "git+https://example.com/r.git", Digest: map[string]string{"sha1": "0123"}, EntryPoint: "build.yaml"}},
	}}
	go standIn.Run(ctx, 20*time.Millisecond)

	const pickup, deadline = time.Second, 20 * time.Second
	r := &resolve.Resolver{Cache: c, Client: c, Live: c, Timeout: deadline, PickupTimeout: pickup, Log: testr.New(t)}
	run := func(r *resolve.Resolver, namespace, resolver string, params ...string) (time.Duration, error) {
		t.Helper()
		var ps v1.Params
		for i := 0; i+1 < len(params); i += 2 {
			ps = append(ps, v1.Param{Name: params[i], Value: *v1.NewStructuredValues(params[i+1])})
		}
		pr := &v1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: namespace}, Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{ResolverRef: v1.ResolverRef{Resolver: v1.ResolverName(resolver), Params: ps}},
		}}
		start := time.Now()
		_, err := r.Resolve(ctx, pr, false)
		return time.Since(start), err
	}
	requestsLeft := func(namespace string) func() bool {
		return func() bool {
			var list resolutionv1beta1.ResolutionRequestList
			require.NoError(t, c.List(ctx, &list, client.InNamespace(namespace)))
			return len(list.Items) == 0
		}
	}
	reason := func(err error) resolution.Reason {
		var rerr *resolution.Error
		if errors.As(err, &rerr) {
			return rerr.Reason
		}
		return ""
	}

	t.Run("answered", func(t *testing.T) {
		// The first request of a fresh API server can take a second
		// (1.3 to 2.1 s here): not the pickup timeout under test here.
		r := &resolve.Resolver{Cache: c, Client: c, Live: c, Timeout: deadline, PickupTimeout: deadline, Log: testr.New(t)}
		took, err := run(r, "runs", "git", "url", "https://example.com/r.git", "pathInRepo", "build.yaml")
		require.NoError(t, err)
		t.Logf("answered in %s", took)
	})

	t.Run("a resolver nobody runs fails within the pickup timeout", func(t *testing.T) {
		took, err := run(r, "runs", "cloud-storage", "bucket", "b")
		require.Error(t, err)
		require.Equal(t, resolve.ReasonTimeout, reason(err), "%v", err)
		require.Contains(t, err.Error(), `no resolver answered ResolutionRequest runs/oci-transport-cloud-storage-`)
		require.Contains(t, err.Error(), `for resolver "cloud-storage" within 1s; is it enabled?`)
		require.GreaterOrEqual(t, took, pickup)
		require.Less(t, took, pickup+2*time.Second, "not the %s deadline", deadline)
		r.Wait()
		require.Eventually(t, requestsLeft("runs"), 10*time.Second, 50*time.Millisecond, "the request is deleted")
	})

	t.Run("a resolver of Tekton's turned off fails at once", func(t *testing.T) {
		flags := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: resolve.ResolversFeatureFlags, Namespace: resolve.DefaultResolversNamespace},
			Data: map[string]string{"enable-git-resolver": "true", "enable-hub-resolver": "false"}}
		require.NoError(t, c.Create(ctx, flags))
		// A Resolver reads the flags once in a while: a new one sees them.
		r := &resolve.Resolver{Cache: c, Client: c, Live: c, Timeout: deadline, PickupTimeout: pickup, Log: testr.New(t)}
		seen := len(standIn.Seen())
		took, err := run(r, "runs", "hub", "name", "build")
		require.Error(t, err)
		require.Equal(t, resolve.ReasonFailed, reason(err), "%v", err)
		require.Contains(t, err.Error(), `resolver "hub" is disabled in this cluster: ConfigMap tekton-pipelines-resolvers/resolvers-feature-flags has enable-hub-resolver: "false"`)
		require.Less(t, took, pickup, "without waiting for a pickup")
		require.Eventually(t, requestsLeft("runs"), 10*time.Second, 50*time.Millisecond)
		require.Len(t, standIn.Seen(), seen, "no request was made")

		_, err = run(r, "runs", "git", "url", "https://example.com/r.git", "pathInRepo", "build.yaml")
		require.NoError(t, err, "an enabled resolver is asked")
	})

	t.Run("a request Tekton's controller marks is waited for", func(t *testing.T) {
		// A second stand-in is Tekton's pipelines controller alone: it
		// marks every request in progress and answers none. The request is
		// handled as far as the webhook can tell (a slow resolver looks
		// the same), so it waits for the deadline, past the pickup timeout.
		controller := &resolvetest.Resolver{Client: c, Controller: true, Types: []string{}}
		cctx, stop := context.WithCancel(ctx)
		defer stop()
		go controller.Run(cctx, 20*time.Millisecond)
		r := &resolve.Resolver{Cache: c, Client: c, Live: c, Timeout: 3 * pickup, PickupTimeout: pickup, Log: testr.New(t)}
		took, err := run(r, "slow", "cloud-storage", "bucket", "b")
		require.Error(t, err)
		require.Equal(t, resolve.ReasonTimeout, reason(err), "%v", err)
		require.Contains(t, err.Error(), `resolver "cloud-storage" did not answer in time`)
		require.GreaterOrEqual(t, took, 3*pickup-100*time.Millisecond)
		require.Empty(t, controller.Errors())
		r.Wait()
	})
	require.Empty(t, standIn.Errors())
}
