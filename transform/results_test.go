package transform

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestResultsBudgetWarning(t *testing.T) {
	steps := func(n int, script bool) []v1.Step {
		out := make([]v1.Step, n)
		for i := range out {
			out[i] = v1.Step{Name: "s", Image: "busybox"}
			if script {
				out[i].Script = "true"
			}
		}
		return out
	}
	results := []v1.TaskResult{{Name: "digest"}}
	// each spec is the converted one: its steps include the injected ones
	for _, c := range []struct {
		name     string
		spec     v1.TaskSpec
		injected int
		want     string // a substring; "" = no warning
	}{
		{"no results", v1.TaskSpec{Steps: steps(6, true)}, 2, ""},
		{"nothing injected", v1.TaskSpec{Steps: steps(4, true), Results: results}, 0, ""},
		// prepare + 1 step: 4096 each (the per-container cap); +1 step: still 4096
		{"share unchanged at the cap", v1.TaskSpec{Steps: steps(2, false), Results: results}, 1, ""},
		// prepare + place-scripts + 4 steps = 6 -> 2048; +2 -> 1536
		{"six containers plus two", v1.TaskSpec{Steps: steps(6, true), Results: results}, 2, "from about 2048 to 1536 bytes"},
		{"step results count", v1.TaskSpec{Steps: append(steps(5, true), v1.Step{Name: "r", Image: "busybox", Script: "x", Results: []v1.StepResult{{Name: "r"}}})}, 2, "from about 2048 to 1536 bytes"},
		{"sidecars count", v1.TaskSpec{Steps: steps(4, true), Sidecars: []v1.Sidecar{{Name: "db", Image: "postgres"}}, Results: results}, 1, "from about 2048 to 1755 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := resultsBudgetWarning("build", &c.spec, c.injected)
			if c.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, c.want)
			require.Contains(t, got, "results-from: sidecar-logs")
		})
	}
}

// With ResultsBudget "unchanged", a run in which a task that returns
// results loses termination-message share is left as it is; tasks without
// results, or whose share stays, do not hold the run back.
func TestResultsBudgetPolicy(t *testing.T) {
	build := func(results bool, steps int) *v1.PipelineRun {
		run := runBinding("source")
		for i := range run.Spec.PipelineSpec.Tasks {
			ts := &run.Spec.PipelineSpec.Tasks[i].TaskSpec.TaskSpec
			for len(ts.Steps) < steps {
				ts.Steps = append(ts.Steps, v1.Step{Name: "more" + string(rune('a'+len(ts.Steps))), Image: "busybox", Script: "true"})
			}
			if results && i == 1 { // test: it pulls
				ts.Results = []v1.TaskResult{{Name: "digest"}}
			}
		}
		return run
	}
	strict := testOpts()
	strict.ResultsBudget = ResultsBudgetUnchanged
	for _, c := range []struct {
		name string
		run  *v1.PipelineRun
		opts Options
		want Outcome
	}{
		{"warn (default): converted with a warning", build(true, 4), testOpts(), Converted},
		{"unchanged: left as it is", build(true, 4), strict, Unchanged},
		{"unchanged, no results: converted", build(false, 4), strict, Converted},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, report, err := PipelineRun(c.run, Resolved{}, c.opts)
			require.NoError(t, err)
			require.Equal(t, c.want, report.Outcome, report.Message)
			if c.want == Unchanged {
				require.Equal(t, ReasonResultsBudget, report.Reason)
				require.Contains(t, report.Message, "--results-budget=unchanged")
				require.Equal(t, c.run, out, "unchanged means unchanged")
				return
			}
			if c.run.Spec.PipelineSpec.Tasks[1].TaskSpec.Results != nil {
				require.NotEmpty(t, report.Warnings)
			}
		})
	}
	bad := testOpts()
	bad.ResultsBudget = "strict"
	_, _, err := PipelineRun(build(true, 4), Resolved{}, bad)
	require.ErrorContains(t, err, `results budget policy "strict"`)
}
