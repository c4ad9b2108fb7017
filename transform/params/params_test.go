package params

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestSubstituteRunParamsAndDefaults(t *testing.T) {
	run := &v1.PipelineRun{Spec: v1.PipelineRunSpec{Params: v1.Params{
		{Name: "gitRevision", Value: *v1.NewStructuredValues("v1.2.3")},
		{Name: "dotted.name", Value: *v1.NewStructuredValues("d")},
	}}}
	spec := &v1.PipelineSpec{Params: v1.ParamSpecs{
		{Name: "gitRevision", Default: v1.NewStructuredValues("main")},
		{Name: "version", Default: v1.NewStructuredValues("0.9")},
		{Name: "task", Default: v1.NewStructuredValues("git-clone-$(params.version)")},
	}}
	repl := Replacements(run, spec)
	got, err := Substitute(v1.Params{
		{Name: "revision", Value: *v1.NewStructuredValues("$(params.gitRevision)")},
		{Name: "name", Value: *v1.NewStructuredValues("$(params.task)")},
		{Name: "quoted", Value: *v1.NewStructuredValues(`$(params["dotted.name"])-$(params['version'])`)},
	}, repl)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"revision": "v1.2.3", "name": "git-clone-0.9", "quoted": "d-0.9"}, Map(got))
}

func TestSubstituteRefusesRunTimeReferences(t *testing.T) {
	_, err := Substitute(v1.Params{
		{Name: "revision", Value: *v1.NewStructuredValues("$(tasks.fetch.results.sha)")},
	}, Replacements(&v1.PipelineRun{}, nil))
	require.ErrorContains(t, err, "$(tasks.fetch.results.sha)")
}

func TestReplacementsOfArraysAndObjects(t *testing.T) {
	run := &v1.PipelineRun{Spec: v1.PipelineRunSpec{Params: v1.Params{
		{Name: "archs", Value: *v1.NewStructuredValues("amd64", "arm64")},
		{Name: "img", Value: v1.ParamValue{Type: v1.ParamTypeObject, ObjectVal: map[string]string{"repo": "r"}}},
	}}}
	spec := &v1.PipelineSpec{Params: v1.ParamSpecs{
		{Name: "tags", Default: v1.NewStructuredValues("a", "b")},
		{Name: "archs", Default: v1.NewStructuredValues("ignored")},
	}}
	got := Replacements(run, spec)
	require.Equal(t, "arm64", got["params.archs[1]"])
	require.Equal(t, "arm64", got[`params["archs"][1]`])
	require.Equal(t, "amd64", got["params.archs[0]"], "the run's value wins over the default")
	require.Equal(t, "r", got["params.img.repo"])
	require.Equal(t, "b", got["params.tags[1]"], "array defaults are used when the run does not set the param")
}
