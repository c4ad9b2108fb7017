package transform_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"sigs.k8s.io/yaml"
)

// finallyRun is a run whose finally task `collect` binds ws and has the
// given extra fields (YAML, indented for a finally list item).
func finallyRun(t *testing.T, extra string) *v1.PipelineRun {
	t.Helper()
	doc := `
metadata: {name: shapes}
spec:
  params: [{name: archs, value: [amd64, arm64]}]
  workspaces:
  - name: ws
    volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}
  pipelineSpec:
    params: [{name: archs, type: array}]
    workspaces: [{name: ws}]
    tasks:
    - name: build
      workspaces: [{name: ws}]
      taskSpec:
        workspaces: [{name: ws}]
        results: [{name: digest}]
        steps: [{name: s, image: busybox, script: "echo b > $(workspaces.ws.path)/b"}]
    - name: fan
      matrix:
        params: [{name: arch, value: "$(params.archs[*])"}]
      workspaces: [{name: ws}]
      taskSpec:
        params: [{name: arch}]
        workspaces: [{name: ws}]
        steps: [{name: s, image: busybox, script: "echo > $(workspaces.ws.path)/$(params.arch)"}]
    finally:
    - name: collect
      workspaces: [{name: ws}]
` + extra
	var run v1.PipelineRun
	require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &run))
	return &run
}

// TestFinallyProducerStatusIsValid: Tekton accepts $(tasks.<name>.status)
// in a finally task's params (its validation checks that <name> is a DAG
// task, which every producer is) in every shape a finally task can take.
func TestFinallyProducerStatusIsValid(t *testing.T) {
	taskSpec := `
      taskSpec:
        workspaces: [{name: ws}]
        params: [{name: arch, default: none}, {name: digest, default: none}]
        steps: [{name: s, image: busybox, script: "ls $(workspaces.ws.path)"}]
`
	for name, extra := range map[string]string{
		"plain":                     taskSpec,
		"with when on a status":     "      when: [{input: $(tasks.build.status), operator: in, values: [Succeeded]}]\n" + taskSpec,
		"with a result param":       "      params: [{name: digest, value: $(tasks.build.results.digest)}]\n" + taskSpec,
		"with a matrix":             "      matrix:\n        params: [{name: arch, value: [amd64, arm64]}]\n" + taskSpec,
		"with a matrix from params": "      matrix:\n        params: [{name: arch, value: '$(params.archs[*])'}]\n" + taskSpec,
	} {
		t.Run(name, func(t *testing.T) {
			out, report, err := transform.PipelineRun(finallyRun(t, extra), transform.Resolved{}, testOptions())
			require.NoError(t, err)
			require.Equal(t, transform.Converted, report.Outcome, report.Message)
			collect := out.Spec.PipelineSpec.Finally[0]
			var status string
			for _, p := range collect.Params {
				if p.Name == transform.ReservedPrefix+"producer-status" {
					status = p.Value.StringVal
				}
			}
			require.Equal(t, "build=$(tasks.build.status),fan=$(tasks.fan.status)", status)
			require.Contains(t, strings.Join(collect.TaskSpec.Steps[0].Args, " "), "--status $(params.oci-transport-producer-status)")
			requireValid(t, "", out)

			// The validation above does check these references: one to a
			// task that is not in the DAG is rejected.
			bad := out.DeepCopy()
			for i, p := range bad.Spec.PipelineSpec.Finally[0].Params {
				if p.Name == transform.ReservedPrefix+"producer-status" {
					bad.Spec.PipelineSpec.Finally[0].Params[i].Value = *v1.NewStructuredValues("ghost=$(tasks.ghost.status)")
				}
			}
			bad.SetDefaults(context.Background())
			require.ErrorContains(t, bad.Validate(context.Background()), "pipeline task ghost is not defined in the pipeline")

			// A v1beta1 client sees the same run through Tekton's conversion.
			ctx := context.Background()
			var beta v1beta1.PipelineRun
			require.NoError(t, beta.ConvertFrom(ctx, out))
			beta.SetDefaults(ctx)
			require.Nil(t, beta.Validate(ctx), "Tekton rejects the v1beta1 form")
		})
	}
}
