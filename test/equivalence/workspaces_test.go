package main

import (
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

func pipelineTaskYAML(t *testing.T, y string) obj {
	t.Helper()
	var o obj
	if err := yaml.Unmarshal([]byte(y), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// A PaC-inlined task binds `source` without declaring it; a propagated one
// neither binds nor declares `cache`, only uses it; `ws` is bound without
// `workspace`, which means the pipeline workspace of the same name.
func TestPodWorkspacesAsTektonMountsThem(t *testing.T) {
	pt := pipelineTaskYAML(t, `
name: build
workspaces:
- {name: source, workspace: shared}
- {name: ws}
taskSpec:
  workspaces: [{name: ws}, {name: declared-only, optional: true}]
  stepTemplate: {workingDir: $(workspaces.tmpl.path)}
  steps:
  - {name: a, image: busybox, script: 'ls $(workspaces.source.path) $(workspaces.cache.path) $(workspaces.not-in-run.bound)'}
  sidecars:
  - {name: s, image: busybox, env: [{name: X, value: $(workspaces.side.path)}]}
`)
	if got, want := usedWorkspaces(m(pt, "taskSpec")), []string{"cache", "not-in-run", "side", "source", "tmpl"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("used = %v, want %v", got, want)
	}
	if got, want := explicitBindings(pt), []binding{{taskWS: "source", pipelineWS: "shared"}, {taskWS: "ws", pipelineWS: "ws"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("explicit = %v, want %v", got, want)
	}
	wantProp := []binding{{taskWS: "cache", pipelineWS: "cache"}, {taskWS: "not-in-run", pipelineWS: "not-in-run"}, {taskWS: "side", pipelineWS: "side"}, {taskWS: "tmpl", pipelineWS: "tmpl"}}
	if got := propagatedBindings(pt); !reflect.DeepEqual(got, wantProp) {
		t.Fatalf("propagated = %v, want %v", got, wantProp)
	}
	run := map[string]bool{"shared": true, "ws": true, "cache": true, "side": true, "tmpl": true}
	if got, want := podWorkspaces(pt, run), []string{"ws", "declared-only", "source", "cache", "side", "tmpl"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("pod workspaces = %v, want %v", got, want)
	}
	if got := propagatedBindings(pipelineTaskYAML(t, `{name: r, taskRef: {name: x}}`)); got != nil {
		t.Fatalf("a referenced Task propagates nothing: %v", got)
	}
}
