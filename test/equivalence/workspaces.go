package main

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
)

// The workspaces a task's pod gets are not only the ones its spec declares.
// Tekton, at run time, also
//   - declares every workspace the PipelineTask binds and the spec does not
//     (the TaskRun reconciler; Pipelines-as-Code inlines tasks that way), and
//   - for an embedded taskSpec, binds by name every workspace its steps,
//     sidecars or stepTemplate use through $(workspaces.<name>...) that the
//     PipelineTask does not bind ("propagated workspaces", the PipelineRun
//     reconciler).
// The harness observes and models all of them, as the pod sees them.

// workspaceUseRE finds $(workspaces.<name>.<anything>) references.
var workspaceUseRE = regexp.MustCompile(`\$\(workspaces\.([^.)]+)\.`)

// usedWorkspaces lists the workspaces a task spec's steps, sidecars and
// stepTemplate refer to, sorted.
func usedWorkspaces(spec obj) []string {
	set := map[string]bool{}
	for _, k := range []string{"steps", "sidecars", "stepTemplate"} {
		b, _ := json.Marshal(spec[k])
		for _, mm := range workspaceUseRE.FindAllStringSubmatch(string(b), -1) {
			set[mm[1]] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// propagatedBindings are the bindings Tekton adds to a PipelineTask with an
// embedded taskSpec: one per used workspace it does not bind, by name.
func propagatedBindings(pt obj) []binding {
	spec := m(pt, "taskSpec")
	if spec == nil {
		return nil
	}
	bound := map[string]bool{}
	for _, w := range list(pt, "workspaces") {
		bound[s(w.(obj), "name")] = true
	}
	var out []binding
	for _, name := range usedWorkspaces(spec) {
		if !bound[name] {
			out = append(out, binding{taskWS: name, pipelineWS: name})
		}
	}
	return out
}

// podWorkspaces lists the task workspaces the pod of pt mounts, in order:
// those its spec declares, then those its PipelineTask binds (explicitly or
// by propagation) that the spec does not declare. Only workspaces the run
// binds are propagated.
func podWorkspaces(pt obj, runWorkspaces map[string]bool) []string {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, d := range list(m(pt, "taskSpec"), "workspaces") {
		add(s(d.(obj), "name"))
	}
	for _, b := range explicitBindings(pt) {
		add(b.taskWS)
	}
	for _, b := range propagatedBindings(pt) {
		if runWorkspaces[b.pipelineWS] {
			add(b.taskWS)
		}
	}
	return out
}

// explicitBindings are the PipelineTask's own workspace bindings; a binding
// without `workspace` refers to the pipeline workspace of its own name.
func explicitBindings(pt obj) []binding {
	var out []binding
	for _, w := range list(pt, "workspaces") {
		w := w.(obj)
		b := binding{taskWS: s(w, "name"), pipelineWS: s(w, "workspace"), subPath: s(w, "subPath")}
		if b.pipelineWS == "" {
			b.pipelineWS = b.taskWS
		}
		out = append(out, b)
	}
	return out
}
