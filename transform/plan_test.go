package transform

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestGraphOrderAndAncestors(t *testing.T) {
	pt := func(name string, runAfter ...string) v1.PipelineTask {
		return v1.PipelineTask{Name: name, RunAfter: runAfter}
	}
	withResult := func(p v1.PipelineTask, param string) v1.PipelineTask {
		p.Params = append(p.Params, v1.Param{Name: "x", Value: *v1.NewStructuredValues(param)})
		return p
	}
	for _, tc := range []struct {
		name      string
		tasks     []v1.PipelineTask
		order     []string
		ancestors map[string][]string
	}{{
		name:  "declaration order breaks ties",
		tasks: []v1.PipelineTask{pt("c"), pt("a"), pt("b")},
		order: []string{"c", "a", "b"},
	}, {
		name:      "a dependency declared later still comes first",
		tasks:     []v1.PipelineTask{pt("deploy", "build"), pt("build")},
		order:     []string{"build", "deploy"},
		ancestors: map[string][]string{"deploy": {"build"}},
	}, {
		name:      "diamond: ancestors are transitive",
		tasks:     []v1.PipelineTask{pt("a"), pt("b", "a"), pt("c", "a"), pt("d", "b", "c")},
		order:     []string{"a", "b", "c", "d"},
		ancestors: map[string][]string{"d": {"a", "b", "c"}, "b": {"a"}, "c": {"a"}},
	}, {
		name:      "a result reference is a dependency",
		tasks:     []v1.PipelineTask{withResult(pt("use"), "$(tasks.make.results.out)"), pt("make")},
		order:     []string{"make", "use"},
		ancestors: map[string][]string{"use": {"make"}},
	}, {
		name:      "parallel siblings are not each other's ancestors",
		tasks:     []v1.PipelineTask{pt("a"), pt("b", "a"), pt("c", "a")},
		order:     []string{"a", "b", "c"},
		ancestors: map[string][]string{"b": {"a"}, "c": {"a"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := buildGraph(&v1.PipelineSpec{Tasks: tc.tasks})
			require.NoError(t, err)
			require.Equal(t, tc.order, g.order)
			for task, want := range tc.ancestors {
				require.Equal(t, want, g.upstream(task, false), "upstream of %s", task)
			}
			require.Equal(t, tc.order, g.upstream("any-finally", true), "finally tasks see every task")
		})
	}
}

func TestGraphRejectsCyclesAndUnknownTasks(t *testing.T) {
	_, err := buildGraph(&v1.PipelineSpec{Tasks: []v1.PipelineTask{{Name: "a", RunAfter: []string{"b"}}, {Name: "b", RunAfter: []string{"a"}}}})
	require.ErrorContains(t, err, "cycle")
	_, err = buildGraph(&v1.PipelineSpec{Tasks: []v1.PipelineTask{{Name: "a", RunAfter: []string{"ghost"}}}})
	require.Error(t, err)
}

func TestOverlapsAndReaches(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"", "git", true},
		{"git", "git", true},
		{"git/", "/git", true},
		{"git", "git/sub", true},
		{"git", "bucket", false},
		{"git", "gitlab", false},
		{"a/b", "a/c", false},
	} {
		require.Equal(t, tc.want, overlaps(tc.a, tc.b), "%q vs %q", tc.a, tc.b)
		require.Equal(t, tc.want, overlaps(tc.b, tc.a), "%q vs %q", tc.b, tc.a)
	}
	w := func(sub string) view { return view{subPath: sub, writable: true} }
	r := func(sub string) view { return view{subPath: sub} }
	require.True(t, reaches([]view{w("git")}, []view{r("")}))
	require.False(t, reaches([]view{w("git")}, []view{r("bucket")}))
	require.False(t, reaches([]view{r("git")}, []view{r("git")}), "a read-only view writes nothing")
	require.True(t, reaches([]view{w("$(params.dir)")}, []view{r("bucket")}), "a variable may become anything")
	require.True(t, reaches([]view{w("git")}, []view{r("$(params.dir)")}))
}

func TestSlug(t *testing.T) {
	require.Equal(t, "workarea", slug("workarea", maxSlug))
	require.Regexp(t, `^my-ws-[0-9a-f]{8}$`, slug("My_WS", maxSlug))
	long := slug("a-very-long-workspace-name-that-goes-on-and-on-and-on-forever", maxSlug)
	require.LessOrEqual(t, len(long), maxSlug)
	require.NotEqual(t, slug("My_WS", maxSlug), slug("my-ws", maxSlug), "renamed slugs never collide with a plain name")
	require.Regexp(t, `^[0-9a-f]{8}$`, slug("___", maxSlug))
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{Registry: "r:5000", StepImage: "img", StepCommand: []string{"/step"}}
	require.NoError(t, ok.validate())
	for _, bad := range []Options{
		{StepImage: "img", StepCommand: []string{"/step"}},
		{Registry: "http://r:5000", StepImage: "img", StepCommand: []string{"/step"}},
		{Registry: "r", StepCommand: []string{"/step"}},
		{Registry: "r", StepImage: "img"},
	} {
		require.Error(t, bad.validate(), "%+v", bad)
	}
	_, _, err := PipelineRun(&v1.PipelineRun{}, Resolved{}, Options{})
	require.ErrorContains(t, err, "registry is required")
	_, _, err = PipelineRun(nil, Resolved{}, ok)
	require.Error(t, err)
}

func TestRepositoryParamValue(t *testing.T) {
	require.Equal(t, "p/q/$(context.pipelineRun.namespace)/$(context.pipelineRun.uid)", Options{RepositoryPrefix: "/p/q/"}.repositoryParamValue())
	require.Equal(t, "$(context.pipelineRun.namespace)/$(context.pipelineRun.uid)", Options{}.repositoryParamValue())
}
