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
