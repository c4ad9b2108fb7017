package main

import (
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestTaskMetadataAndWhatIsMissing(t *testing.T) {
	var pspec, task obj
	if err := yaml.Unmarshal([]byte(`
tasks:
- {name: build, taskRef: {name: go-build}}
- {name: inline, taskSpec: {steps: [{name: s, image: busybox}]}}
finally:
- {name: notify, taskRef: {name: unknown}}
`), &pspec); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(`
metadata:
  name: go-build
  labels: {kueue.x-k8s.io/queue-name: builds}
  annotations: {tekton.dev/categories: Build Tools, kubectl.kubernetes.io/last-applied-configuration: "{}"}
`), &task); err != nil {
		t.Fatal(err)
	}
	got := taskMetadata(pspec, map[string]obj{"go-build": task})
	want := map[string]objectMeta{"build": {
		labels:      map[string]string{"kueue.x-k8s.io/queue-name": "builds", "tekton.dev/task": "go-build"},
		annotations: map[string]string{"tekton.dev/categories": "Build Tools"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("taskMetadata = %v, want %v", got, want)
	}

	taskRun := objectMeta{
		labels:      map[string]string{"tekton.dev/task": "go-build", "tekton.dev/pipelineTask": "build"},
		annotations: map[string]string{"tekton.dev/categories": "Build"},
	}
	miss := missingMeta(want["build"], taskRun)
	wantMiss := []string{`annotation tekton.dev/categories="Build", want "Build Tools"`, `label kueue.x-k8s.io/queue-name="builds" missing`}
	if !reflect.DeepEqual(miss, wantMiss) {
		t.Fatalf("missing = %q, want %q", miss, wantMiss)
	}
	if miss := missingMeta(want["build"], want["build"]); len(miss) != 0 {
		t.Fatalf("nothing is missing from itself: %v", miss)
	}
}
