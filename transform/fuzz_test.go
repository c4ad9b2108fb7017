package transform_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"bytes"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/offline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// FuzzPipelineRun feeds arbitrary multi-document YAML (seeded with every
// golden input) through decode, offline resolution and transform. It must
// never panic, never mutate its input, and when Tekton accepts the input
// and the run is converted, Tekton must accept the output and a second pass
// must change nothing.
func FuzzPipelineRun(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*/input.yaml")
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	opts := testOptions()
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := offline.Load("fuzz.yaml", bytes.NewReader(data))
		if err != nil || len(docs) == 0 {
			return
		}
		run, ok := docs[0].Object.(*v1.PipelineRun)
		if !ok {
			return
		}
		resolved, _ := offline.Resolve(run, docs)
		before := run.DeepCopy()
		out, report, err := transform.PipelineRun(run, resolved, opts)
		if err != nil {
			t.Fatalf("transform returned an error for valid options: %v", err)
		}
		if !equality.Semantic.DeepEqual(before, run) {
			t.Fatal("transform mutated its input")
		}
		if report.Outcome != transform.Converted {
			return
		}
		ctx := context.Background()
		valid := func(r *v1.PipelineRun) error {
			r = r.DeepCopy()
			if r.Name == "" {
				r.Name = "fuzz"
			}
			r.SetDefaults(ctx)
			if fe := r.Validate(ctx); fe != nil {
				return fe
			}
			return nil
		}
		if valid(run) == nil && resolvedValid(ctx, resolved) {
			if err := valid(out); err != nil {
				t.Fatalf("Tekton accepts the input but not our output: %v", err)
			}
		}
		again, report2, err := transform.PipelineRun(out, resolved, opts)
		if err != nil || report2.Outcome != transform.AlreadyConverted || !equality.Semantic.DeepEqual(again, out) {
			t.Fatalf("second pass is not a no-op: outcome %s, err %v", report2.Outcome, err)
		}
	})
}

// resolvedValid reports whether every resolved spec passes Tekton's
// validation on its own, as it must have to be created in a cluster.
func resolvedValid(ctx context.Context, r transform.Resolved) bool {
	if r.Pipeline != nil {
		p := &v1.Pipeline{Spec: *r.Pipeline.Spec.DeepCopy()}
		p.Name = "p"
		p.SetDefaults(ctx)
		if p.Validate(ctx) != nil {
			return false
		}
	}
	for _, rt := range r.Tasks {
		task := &v1.Task{Spec: *rt.Spec.DeepCopy()}
		task.Name = "t"
		task.SetDefaults(ctx)
		if task.Validate(ctx) != nil {
			return false
		}
	}
	return true
}
