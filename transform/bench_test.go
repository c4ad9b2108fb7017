package transform_test

import (
	"fmt"
	"testing"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
)

// releaseRun13 builds a 13-task release-shaped run: clone, then four
// parallel checks, build and test per arch, publish with two subPath views,
// three uploads and a report, plus a finally task, every Task referenced by
// name and resolved (so each conversion inlines 13 specs).
func releaseRun13() (*v1.PipelineRun, transform.Resolved) {
	task := func(ws ...string) transform.ResolvedTask {
		spec := v1.TaskSpec{Steps: []v1.Step{{Name: "run", Image: "busybox", Script: "echo hello > out"}}}
		for _, w := range ws {
			spec.Workspaces = append(spec.Workspaces, v1.WorkspaceDeclaration{Name: w})
		}
		return transform.ResolvedTask{Spec: spec, Source: transform.Source{Kind: "Task", Resolver: "hub", Params: map[string]string{"name": "x"}}}
	}
	pt := func(name string, runAfter []string, bindings ...v1.WorkspacePipelineTaskBinding) v1.PipelineTask {
		return v1.PipelineTask{Name: name, RunAfter: runAfter, TaskRef: &v1.TaskRef{Name: name}, Workspaces: bindings}
	}
	git := v1.WorkspacePipelineTaskBinding{Name: "source", Workspace: "workarea", SubPath: "git"}
	bucket := v1.WorkspacePipelineTaskBinding{Name: "output", Workspace: "workarea", SubPath: "bucket"}
	resolved := transform.Resolved{Tasks: map[string]transform.ResolvedTask{}}
	var tasks []v1.PipelineTask
	add := func(p v1.PipelineTask) {
		tasks = append(tasks, p)
		var names []string
		for _, b := range p.Workspaces {
			names = append(names, b.Name)
		}
		resolved.Tasks[p.Name] = task(names...)
	}
	add(pt("clone", nil, git))
	for _, c := range []string{"lint", "vet", "license", "precheck"} {
		add(pt(c, []string{"clone"}, git))
	}
	for _, arch := range []string{"amd64", "arm64"} {
		add(pt("build-"+arch, []string{"lint", "vet", "license", "precheck"}, git))
	}
	add(pt("test", []string{"build-amd64"}, git))
	add(pt("publish", []string{"build-arm64", "test"}, git, bucket))
	for _, u := range []string{"upload", "upload-latest"} {
		add(pt(u, []string{"publish"}, v1.WorkspacePipelineTaskBinding{Name: "source", Workspace: "workarea", SubPath: "bucket"}))
	}
	add(pt("report", []string{"upload"}, bucket))
	fin := pt("notify", nil, git)
	resolved.Tasks["notify"] = task("source")

	run := &v1.PipelineRun{
		Spec: v1.PipelineRunSpec{
			PipelineSpec: &v1.PipelineSpec{Workspaces: []v1.PipelineWorkspaceDeclaration{{Name: "workarea"}}, Tasks: tasks, Finally: []v1.PipelineTask{fin}},
			Workspaces:   []v1.WorkspaceBinding{{Name: "workarea", VolumeClaimTemplate: &corev1.PersistentVolumeClaim{}}},
		},
	}
	run.Name = "release"
	return run, resolved
}

func BenchmarkPipelineRun(b *testing.B) {
	run, resolved := releaseRun13()
	opts := testOptions()
	out, report, err := transform.PipelineRun(run, resolved, opts)
	if err != nil || report.Outcome != transform.Converted {
		b.Fatalf("setup: %v %+v", err, report)
	}
	if n := len(out.Spec.PipelineSpec.Tasks) + len(out.Spec.PipelineSpec.Finally); n != 13 {
		b.Fatalf("want 13 tasks, got %d", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := transform.PipelineRun(run, resolved, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchmarkRunConverts(t *testing.T) {
	run, resolved := releaseRun13()
	out, report, err := transform.PipelineRun(run, resolved, testOptions())
	if err != nil || report.Outcome != transform.Converted {
		t.Fatalf("%v %+v", err, report)
	}
	requireValid(t, "", out)
	// report binds only the bucket view, but a subPath may be a symlink that
	// an earlier task made, so it lists every upstream pusher and the step
	// prunes at run time.
	got := fmt.Sprint(report.Tasks[len(report.Tasks)-2].PullsFrom)
	if want := "[clone lint vet license precheck build-amd64 build-arm64 test publish upload]"; got != want {
		t.Fatalf("report pulls from %s, want %s", got, want)
	}
}
