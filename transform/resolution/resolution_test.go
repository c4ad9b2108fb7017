package resolution_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/offline"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// recorder answers every reference with a Task and records what it was asked.
type recorder struct{ asked []resolution.Reference }

func (r *recorder) Fetch(_ context.Context, ref resolution.Reference) (any, resolution.Origin, error) {
	r.asked = append(r.asked, ref)
	return &v1.Task{}, resolution.Origin{}, nil
}

func run(t *testing.T, doc string) *v1.PipelineRun {
	t.Helper()
	docs, err := offline.Load("run.yaml", strings.NewReader(doc))
	require.NoError(t, err)
	return docs[0].Object.(*v1.PipelineRun)
}

const taskRun = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: nightly-1, namespace: team-a}
spec:
  workspaces: [{name: ws, volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}]
  pipelineSpec:
    workspaces: [{name: ws}]
    tasks:
    - name: a
      workspaces: [{name: ws}]
      taskRef: REF
`

func withRef(ref string) string { return strings.Replace(taskRun, "REF", ref, 1) }

func TestResolveAgreedRules(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, ref string
		reason    resolution.Reason
		want      resolution.Reference
	}{{
		name:   "ClusterTask is refused: Tekton v1.15 rejects it",
		ref:    `{name: git-clone, kind: ClusterTask}`,
		reason: resolution.ReasonUnsupported,
	}, {
		name: "context.pipelineRun.namespace and name are substituted",
		ref:  `{resolver: bundles, params: [{name: bundle, value: "reg/$(context.pipelineRun.namespace)/tasks:$(context.pipelineRun.name)"}]}`,
		want: resolution.Reference{Kind: "Task", Namespace: "team-a", RunNamespace: "team-a", Resolver: "bundles",
			Params: v1.Params{{Name: "bundle", Value: *v1.NewStructuredValues("reg/team-a/tasks:nightly-1")}}},
	}, {
		name: "the cluster resolver's namespace param is where the Task is read",
		ref:  `{resolver: cluster, params: [{name: kind, value: task}, {name: name, value: build}, {name: namespace, value: catalog}]}`,
		want: resolution.Reference{Kind: "Task", Name: "build", Namespace: "catalog", RunNamespace: "team-a", Resolver: "cluster",
			Params: v1.Params{{Name: "kind", Value: *v1.NewStructuredValues("task")}, {Name: "name", Value: *v1.NewStructuredValues("build")}, {Name: "namespace", Value: *v1.NewStructuredValues("catalog")}}},
	}, {
		name:   "the cluster resolver's kind param must be the reference's kind",
		ref:    `{resolver: cluster, params: [{name: kind, value: pipeline}, {name: name, value: build}]}`,
		reason: resolution.ReasonUnsupported,
	}, {
		name:   "a variable only known at run time is refused",
		ref:    `{resolver: bundles, params: [{name: bundle, value: "reg/tasks:$(context.pipelineRun.uid)"}]}`,
		reason: resolution.ReasonUnsupported,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			_, err := resolution.Resolve(ctx, run(t, withRef(tc.ref)), r)
			if tc.reason != "" {
				reason, _, ok := resolution.Describe(err)
				require.True(t, ok, "%v", err)
				require.Equal(t, tc.reason, reason, "%v", err)
				require.Empty(t, r.asked, "refused before anything is read")
				return
			}
			require.NoError(t, err)
			require.Equal(t, []resolution.Reference{tc.want}, r.asked)
		})
	}
}

func TestResolvePipelineRefWithAPIVersionIsRefused(t *testing.T) {
	pr := run(t, withRef(`{name: x}`))
	pr.Spec.PipelineSpec = nil
	pr.Spec.PipelineRef = &v1.PipelineRef{Name: "p", APIVersion: "example.dev/v1"}
	_, err := resolution.Resolve(context.Background(), pr, &recorder{})
	reason, message, ok := resolution.Describe(err)
	require.True(t, ok)
	require.Equal(t, resolution.ReasonUnsupported, reason)
	require.Contains(t, message, `apiVersion "example.dev/v1"`)
}

func TestDescribeListsEveryFailure(t *testing.T) {
	r := run(t, withRef(`{name: missing}`))
	_, err := resolution.Resolve(context.Background(), r, offline.Files(nil))
	reason, message, ok := resolution.Describe(err)
	require.True(t, ok)
	require.Equal(t, resolution.ReasonNotFound, reason)
	require.Equal(t, `task "a": Task team-a/missing not found`, message, "worded as the webhook words it")
}
