package main

import (
	"fmt"
	"sort"
)

// Tekton copies a referenced Task's labels and annotations onto its TaskRuns
// (and from there onto their pods) and labels them tekton.dev/task; kubectl's
// last-applied configuration is not copied. A converted run inlines the Task,
// and must keep all of it: dashboards, tkn, LimitRanges, Kueue and policies
// select on them.

const lastAppliedAnno = "kubectl.kubernetes.io/last-applied-configuration"

// objectMeta is the labels and annotations of one object.
type objectMeta struct {
	labels, annotations map[string]string
}

// metaOf reads an object's labels and annotations.
func metaOf(o obj) objectMeta {
	strs := func(v obj) map[string]string {
		out := map[string]string{}
		for k, x := range v {
			out[k], _ = x.(string)
		}
		return out
	}
	return objectMeta{labels: strs(m(o, "metadata", "labels")), annotations: strs(m(o, "metadata", "annotations"))}
}

// taskMetadata returns, per pipeline task with a taskRef to one of tasks (by
// name), what its TaskRuns and pods must carry of the Task's metadata.
func taskMetadata(pspec obj, tasks map[string]obj) map[string]objectMeta {
	out := map[string]objectMeta{}
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(pspec, sect) {
			name := s(m(t, "taskRef"), "name")
			task, ok := tasks[name]
			if !ok {
				continue
			}
			want := metaOf(task)
			want.labels["tekton.dev/task"] = name
			delete(want.annotations, lastAppliedAnno)
			out[s(t.(obj), "name")] = want
		}
	}
	return out
}

// missingMeta lists, sorted, what of want got lacks or has with another value.
func missingMeta(want, got objectMeta) []string {
	var out []string
	check := func(what string, w, g map[string]string) {
		for k, v := range w {
			if gv, ok := g[k]; !ok {
				out = append(out, fmt.Sprintf("%s %s=%q missing", what, k, v))
			} else if gv != v {
				out = append(out, fmt.Sprintf("%s %s=%q, want %q", what, k, gv, v))
			}
		}
	}
	check("label", want.labels, got.labels)
	check("annotation", want.annotations, got.annotations)
	sort.Strings(out)
	return out
}
