package resolve

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
	repl := replacements(run, spec)
	got, err := substitute(v1.Params{
		{Name: "revision", Value: *v1.NewStructuredValues("$(params.gitRevision)")},
		{Name: "name", Value: *v1.NewStructuredValues("$(params.task)")},
		{Name: "quoted", Value: *v1.NewStructuredValues(`$(params["dotted.name"])-$(params['version'])`)},
	}, repl)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"revision": "v1.2.3", "name": "git-clone-0.9", "quoted": "d-0.9"}, paramMap(got))
}

func TestSubstituteRefusesRunTimeReferences(t *testing.T) {
	_, err := substitute(v1.Params{
		{Name: "revision", Value: *v1.NewStructuredValues("$(tasks.fetch.results.sha)")},
	}, replacements(&v1.PipelineRun{}, nil))
	require.ErrorContains(t, err, "$(tasks.fetch.results.sha)")
}

func TestSameNamespaceCluster(t *testing.T) {
	p := func(kv ...string) v1.Params {
		var out v1.Params
		for i := 0; i < len(kv); i += 2 {
			out = append(out, v1.Param{Name: kv[i], Value: *v1.NewStructuredValues(kv[i+1])})
		}
		return out
	}
	_, name, ok := sameNamespaceCluster("cluster", p("kind", "task", "name", "t"), "Task", "a")
	require.True(t, ok)
	require.Equal(t, "t", name)
	_, _, ok = sameNamespaceCluster("cluster", p("kind", "task", "name", "t", "namespace", "other"), "Task", "a")
	require.False(t, ok, "other namespaces go through the resolver and its namespace policy")
	_, _, ok = sameNamespaceCluster("cluster", p("kind", "pipeline", "name", "t"), "Task", "a")
	require.False(t, ok)
	_, _, ok = sameNamespaceCluster("git", p("name", "t"), "Task", "a")
	require.False(t, ok)
}
