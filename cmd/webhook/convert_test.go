package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

const example = "../../deploy/examples/release/"

func convert(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runConvert(args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func exampleArgs() []string {
	var args []string
	for _, f := range []string{"run.yaml", "release-pipeline.yaml", "tasks.yaml", "publish.yaml", "precheck.yaml"} {
		args = append(args, "-f", example+f)
	}
	return args
}

func TestConvertShippedExample(t *testing.T) {
	code, out, errOut := convert(t, "", exampleArgs()...)
	require.Equal(t, exitConverted, code, errOut)
	require.Contains(t, errOut, "converted PipelineRun release-*")

	obj, err := decode.Object([]byte(out))
	require.NoError(t, err)
	run := obj.(*v1.PipelineRun)
	require.Nil(t, run.Spec.PipelineRef, "the pipeline is inlined")
	require.NotNil(t, run.Spec.Workspaces[0].EmptyDir)
	require.Nil(t, run.Spec.Workspaces[0].VolumeClaimTemplate)
	require.NotNil(t, run.Spec.Workspaces[1].Secret, "the secret binding is kept")
	require.Equal(t, "workarea", run.Annotations[transform.AnnotationConverted])
	require.Contains(t, run.Annotations[transform.AnnotationSources], `"resolver":"git"`)
	require.Contains(t, run.Annotations[transform.AnnotationSources], `"revision":"v0.3.0"`, "resolver params are substituted with the run's params")

	ctx := context.Background()
	run.Name = "release-abcde"
	run.SetDefaults(ctx)
	require.Nil(t, run.Validate(ctx), "Tekton accepts the output")
}

func TestConvertReadsStdin(t *testing.T) {
	run, err := os.ReadFile(filepath.Join("../../transform/testdata/linear/input.yaml"))
	require.NoError(t, err)
	code, out, errOut := convert(t, string(run), "-f", "-")
	require.Equal(t, exitConverted, code, errOut)
	require.Contains(t, out, "oci-transport-push-source")
}

func TestConvertExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	badYAML := write("bad.yaml", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nspec: [unclosed\n")
	unknownKind := write("cm.yaml", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
	noTask := write("run.yaml", `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  workspaces: [{name: ws, volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}]
  pipelineSpec:
    workspaces: [{name: ws}]
    tasks: [{name: a, taskRef: {name: missing-task}, workspaces: [{name: ws}]}]
`)
	custom := "../../transform/testdata/custom-task/input.yaml"

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"bad yaml", []string{"-f", badYAML}, exitBadInput, "bad.yaml: document 0: "},
		{"unknown kind", []string{"-f", unknownKind}, exitBadInput, `cm.yaml: document 1: unsupported kind: apiVersion "v1" kind "ConfigMap"`},
		{"missing referenced task", []string{"-f", noTask}, exitUnchanged, `left unchanged: PipelineRun r: ReferenceNotFound: task "a": Task missing-task not found`},
		{"missing file", []string{"-f", filepath.Join(dir, "nope.yaml")}, exitBadInput, "no such file"},
		{"no run", []string{"-f", example + "tasks.yaml"}, exitBadInput, "no PipelineRun in"},
		{"two runs", []string{"-f", example + "run.yaml", "-f", example + "run.yaml"}, exitBadInput, "a second PipelineRun"},
		{"cannot convert", []string{"-f", custom}, exitUnchanged, "left unchanged: PipelineRun custom: CustomTaskBindsWorkspace"},
		{"no files", nil, exitUsage, "usage: webhook convert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := convert(t, "", tc.args...)
			require.Equal(t, tc.wantCode, code, errOut)
			require.Contains(t, errOut, tc.wantErr)
			if code == exitBadInput {
				require.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "a bad input is one line: %q", errOut)
				require.NotContains(t, errOut, "goroutine", "never a stack trace")
			}
		})
	}
}

func TestConvertUnchangedPrintsTheRunAsItIs(t *testing.T) {
	code, out, _ := convert(t, "", "-f", "../../transform/testdata/custom-task/input.yaml")
	require.Equal(t, exitUnchanged, code)
	obj, err := decode.Object([]byte(out))
	require.NoError(t, err)
	require.NotNil(t, obj.(*v1.PipelineRun).Spec.Workspaces[0].VolumeClaimTemplate)
}

// TestConvertDecidesAsTheWebhook: the run's own metadata decides before its
// spec, in the webhook's order, and a run left unchanged for a reason
// carries the skipped-reason annotation the webhook would store.
func TestConvertDecidesAsTheWebhook(t *testing.T) {
	linear, err := os.ReadFile("../../transform/testdata/linear/input.yaml")
	require.NoError(t, err)
	withMeta := func(meta string) string {
		return strings.Replace(string(linear), "metadata:\n", "metadata:\n"+meta, 1)
	}
	for _, tc := range []struct {
		name, run, wantErr, wantAnnotation string
		wantCode                           int
	}{
		{"opted out", strings.Replace(string(linear), `enabled: "true"`, `enabled: "false"`, 1), `OptedOut: labelled oci-transport.tekton.dev/enabled: "false"`, "", exitUnchanged},
		{"skipped earlier", withMeta("  annotations: {oci-transport.tekton.dev/skipped-reason: \"ResolutionTimeout: slow\"}\n"), "SkippedEarlier: ResolutionTimeout: slow", "ResolutionTimeout: slow", exitUnchanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := convert(t, tc.run, "-f", "-")
			require.Equal(t, tc.wantCode, code, errOut)
			require.Contains(t, errOut, tc.wantErr)
			obj, err := decode.Object([]byte(out))
			require.NoError(t, err)
			run := obj.(*v1.PipelineRun)
			require.NotNil(t, run.Spec.Workspaces[0].VolumeClaimTemplate, "left as it is")
			require.Equal(t, tc.wantAnnotation, run.Annotations[transform.AnnotationSkippedReason])
		})
	}

	code, out, _ := convert(t, "", "-f", "../../transform/testdata/custom-task/input.yaml")
	require.Equal(t, exitUnchanged, code)
	require.Contains(t, out, transform.AnnotationSkippedReason+": 'CustomTaskBindsWorkspace: ", "the annotation the webhook stores")
}
