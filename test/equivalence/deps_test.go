package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// The harness's DAG (pipelineTasks: runAfter and result references) must be
// Tekton's own (PipelineTask.Deps) on every case of the corpus: a missing
// edge makes the model expect a task to see less than its ancestors left
// (propagated-result-orders-tasks references results only inside its
// embedded steps; the harness once judged its right converted views wrong).
func TestDepsAreTektons(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	dirs, _ := filepath.Glob("testdata/*/*.yaml")
	for _, f := range append(files, dirs...) {
		docs, err := readDocs([]string{f})
		require.NoError(t, err)
		for _, d := range docs {
			var pspec obj
			switch s(d, "kind") {
			case "PipelineRun":
				pspec = m(d, "spec", "pipelineSpec")
			case "Pipeline":
				pspec = m(d, "spec")
			}
			if pspec == nil {
				continue
			}
			b, err := json.Marshal(pspec)
			require.NoError(t, err)
			var typed v1.PipelineSpec
			require.NoError(t, json.Unmarshal(b, &typed), f)
			want := map[string][]string{}
			for _, pt := range typed.Tasks {
				want[pt.Name] = pt.Deps()
			}
			for _, pt := range pipelineTasks(pspec, nil) {
				if pt.finally {
					continue
				}
				got := slices.Compact(slices.Sorted(slices.Values(pt.deps)))
				require.Equal(t, strings.Join(want[pt.name], ","), strings.Join(got, ","), "%s: task %s", f, pt.name)
			}
		}
	}
}
