package decode

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestObject(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		check   func(t *testing.T, obj any)
		wantErr string
	}{{
		name: "v1 pipelinerun",
		doc: `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  pipelineRef: {name: p}
  workspaces: [{name: w, volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}]`,
		check: func(t *testing.T, obj any) {
			pr := obj.(*v1.PipelineRun)
			require.Equal(t, "p", pr.Spec.PipelineRef.Name)
			require.NotNil(t, pr.Spec.Workspaces[0].VolumeClaimTemplate)
			require.Equal(t, "PipelineRun", pr.Kind)
		},
	}, {
		name: "v1beta1 pipelinerun is converted",
		doc: `apiVersion: tekton.dev/v1beta1
kind: PipelineRun
metadata: {name: r}
spec:
  serviceAccountName: builder
  timeout: 1h
  pipelineRef: {name: p}`,
		check: func(t *testing.T, obj any) {
			pr := obj.(*v1.PipelineRun)
			require.Equal(t, "builder", pr.Spec.TaskRunTemplate.ServiceAccountName, "v1beta1 serviceAccountName moves to taskRunTemplate")
			require.Equal(t, "1h0m0s", pr.Spec.Timeouts.Pipeline.Duration.String())
			require.Equal(t, "tekton.dev/v1", pr.APIVersion)
		},
	}, {
		name: "v1beta1 task is converted",
		doc:  `{"apiVersion":"tekton.dev/v1beta1","kind":"Task","metadata":{"name":"t"},"spec":{"steps":[{"name":"s","image":"busybox","resources":{"limits":{"cpu":"1"}}}]}}`,
		check: func(t *testing.T, obj any) {
			task := obj.(*v1.Task)
			require.Equal(t, "1", task.Spec.Steps[0].ComputeResources.Limits.Cpu().String())
		},
	}, {
		name: "v1 pipeline",
		doc:  "apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata: {name: p}\nspec: {tasks: [{name: a, taskRef: {name: t}}]}",
		check: func(t *testing.T, obj any) {
			require.Equal(t, "t", obj.(*v1.Pipeline).Spec.Tasks[0].TaskRef.Name)
		},
	},
		{name: "unknown kind", doc: "apiVersion: tekton.dev/v1\nkind: TaskRun\n", wantErr: `unsupported kind: tekton.dev/v1 "TaskRun"`},
		{name: "foreign group", doc: "apiVersion: v1\nkind: ConfigMap\n", wantErr: "unsupported kind"},
		{name: "no kind", doc: "metadata: {name: x}\n", wantErr: "apiVersion and kind are required"},
		{name: "not yaml", doc: "spec: [unclosed", wantErr: "not a YAML or JSON object"},
		{name: "wrong field type", doc: "apiVersion: tekton.dev/v1\nkind: Task\nspec: {steps: 3}\n", wantErr: "decoding tekton.dev/v1 Task"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := Object([]byte(tc.doc))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, obj)
		})
	}
}

func TestUnsupportedKindIsMatchable(t *testing.T) {
	_, err := Object([]byte("apiVersion: tekton.dev/v1beta1\nkind: ClusterTask\n"))
	require.True(t, errors.Is(err, ErrUnsupportedKind))
}
