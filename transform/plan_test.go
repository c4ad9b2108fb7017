package transform

import (
	"slices"
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

func TestOverlaps(t *testing.T) {
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
}

func TestOptionalProducers(t *testing.T) {
	pt := func(name string, runAfter ...string) v1.PipelineTask {
		return v1.PipelineTask{Name: name, RunAfter: runAfter}
	}
	when := func(p v1.PipelineTask) v1.PipelineTask {
		p.When = v1.WhenExpressions{{Input: "$(params.latest)", Operator: "in", Values: []string{"true"}}}
		return p
	}
	onError := func(p v1.PipelineTask, v v1.PipelineTaskOnErrorType) v1.PipelineTask {
		p.OnError = v
		return p
	}
	matrix := func(p v1.PipelineTask) v1.PipelineTask {
		p.Matrix = &v1.Matrix{Params: v1.Params{{Name: "arch", Value: *v1.NewStructuredValues("amd64", "arm64")}}}
		return p
	}
	usesResult := func(p v1.PipelineTask, of string) v1.PipelineTask {
		p.Params = append(p.Params, v1.Param{Name: "in", Value: *v1.NewStructuredValues("$(tasks." + of + ".results.out)")})
		return p
	}
	for _, tc := range []struct {
		name     string
		tasks    []v1.PipelineTask
		optional []string // the rest are required
	}{{
		name:  "plain tasks are required",
		tasks: []v1.PipelineTask{pt("clone"), pt("build", "clone"), pt("test", "build")},
	}, {
		name:     "when on the producer",
		tasks:    []v1.PipelineTask{pt("clone"), when(pt("publish-latest", "clone")), pt("report", "clone")},
		optional: []string{"publish-latest"},
	}, {
		name:     "when on an ancestor makes its descendants optional",
		tasks:    []v1.PipelineTask{pt("clone"), when(pt("check", "clone")), usesResult(pt("deploy"), "check"), pt("verify", "deploy")},
		optional: []string{"check", "deploy", "verify"},
	}, {
		name:     "when on a task that is not an ancestor does not count",
		tasks:    []v1.PipelineTask{pt("clone"), when(pt("side", "clone")), pt("build", "clone")},
		optional: []string{"side"},
	}, {
		name:     "matrix on the producer (an empty fan-out is skipped)",
		tasks:    []v1.PipelineTask{pt("clone"), matrix(pt("build", "clone")), pt("package", "build")},
		optional: []string{"build"},
	}, {
		name:     "onError continue on the producer",
		tasks:    []v1.PipelineTask{pt("clone"), onError(pt("scan", "clone"), v1.PipelineTaskContinue), pt("report", "clone")},
		optional: []string{"scan"},
	}, {
		name:     "onError continue on an ancestor",
		tasks:    []v1.PipelineTask{onError(pt("scan"), v1.PipelineTaskContinue), pt("fix", "scan"), pt("report", "fix")},
		optional: []string{"scan", "fix", "report"},
	}, {
		name:     "onError from a param may become continue",
		tasks:    []v1.PipelineTask{onError(pt("scan"), "$(params.on-error)")},
		optional: []string{"scan"},
	}, {
		name:  "onError stopAndFail is required",
		tasks: []v1.PipelineTask{onError(pt("scan"), v1.PipelineTaskStopAndFail), pt("report", "scan")},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &v1.PipelineSpec{Tasks: tc.tasks}
			g, err := buildGraph(spec)
			require.NoError(t, err)
			got := optionalProducers(spec, g)
			for _, task := range tc.tasks {
				require.Equal(t, slices.Contains(tc.optional, task.Name), got[task.Name], "optional[%s]", task.Name)
			}
		})
	}
}

// TestEveryUpstreamPusherIsAProducer: subPaths that do not overlap by name
// may still share files at run time (a subPath can be a symlink that an
// earlier task made), so a consumer lists every upstream pusher and the step
// prunes by the views it resolves then.
func TestEveryUpstreamPusherIsAProducer(t *testing.T) {
	ws := func(task, sub string) v1.WorkspacePipelineTaskBinding {
		return v1.WorkspacePipelineTaskBinding{Name: task, Workspace: "workarea", SubPath: sub}
	}
	task := func(name string, runAfter []string, b v1.WorkspacePipelineTaskBinding, readOnly bool) v1.PipelineTask {
		return v1.PipelineTask{
			Name: name, RunAfter: runAfter, Workspaces: []v1.WorkspacePipelineTaskBinding{b},
			TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{
				Workspaces: []v1.WorkspaceDeclaration{{Name: b.Name, ReadOnly: readOnly}},
				Steps:      []v1.Step{{Name: "s", Image: "busybox"}},
			}},
		}
	}
	spec := &v1.PipelineSpec{
		Tasks: []v1.PipelineTask{
			task("link", nil, ws("root", ""), false),                          // current -> releases/v1
			task("write", []string{"link"}, ws("current", "current"), false),  // writes through the link
			task("read", []string{"write"}, ws("releases", "releases"), true), // sees it under releases/v1
			task("lint", []string{"link"}, ws("docs", "docs"), true),          // pushes nothing
			task("unread", []string{"link"}, ws("scratch", "scratch"), false), // a leaf: nobody reads it
		},
	}
	g, err := buildGraph(spec)
	require.NoError(t, err)
	plans, err := planTasks(spec, map[string]bool{"workarea": true}, Resolved{}, g)
	require.NoError(t, err)
	byName := map[string]*taskPlan{}
	for _, p := range plans {
		byName[p.name] = p
	}
	require.Equal(t, []string{"link", "write"}, byName["read"].pullsFrom["workarea"], "current and releases do not overlap by name")
	require.Empty(t, byName["read"].optional["workarea"])
	require.True(t, byName["write"].pushes["workarea"], "read pulls from it")
	require.False(t, byName["unread"].pushes["workarea"], "no later task pulls from it")
	require.False(t, byName["lint"].pushes["workarea"], "readOnly")
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
	require.NoError(t, ok.Validate())
	for _, bad := range []Options{
		{StepImage: "img", StepCommand: []string{"/step"}},
		{Registry: "http://r:5000", StepImage: "img", StepCommand: []string{"/step"}},
		{Registry: "r", StepCommand: []string{"/step"}},
		{Registry: "r", StepImage: "img"},
	} {
		require.Error(t, bad.Validate(), "%+v", bad)
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
