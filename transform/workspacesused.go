package transform

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// workspaceRef is Tekton's substitution.ExtractVariablesFromString pattern
// for the prefix "workspaces" (braceMatchingRegex with parameterSubstitution),
// compiled once: Tekton compiles it again for every string it looks at,
// which was the largest single cost of an admission.
var workspaceRef = regexp.MustCompile(fmt.Sprintf("(\\$(\\(%s(\\.(?P<var1>%s)|\\[\"(?P<var2>%s)\"\\]|\\['(?P<var3>%s)'\\])\\)))",
	"workspaces", `.*?(\[\*\])?`, `.*?(\[\*\])?`, `.*?(\[\*\])?`))

// workspaceRefGroups are the indexes of var1, var2 and var3 in a match.
var workspaceRefGroups = [3]int{
	workspaceRef.SubexpIndex("var1"), workspaceRef.SubexpIndex("var2"), workspaceRef.SubexpIndex("var3"),
}

// workspacesUsedByTask is Tekton's workspace.FindWorkspacesUsedByTask (the
// same fields, the same matches, the same error), with the pattern compiled
// once and strings that cannot match (no "$(workspaces") skipped. It returns
// the names sorted, as sets.String.List does; Tekton's error names whichever
// bad string its map iteration meets first, this one the first in sorted
// order. TestWorkspacesUsedByTask and FuzzWorkspacesUsedByTask compare both.
func workspacesUsedByTask(ts *v1.TaskSpec) ([]string, error) {
	var locations []string
	add := func(s ...string) {
		for _, v := range s {
			if strings.Contains(v, "$(workspaces") {
				locations = append(locations, v)
			}
		}
	}
	for i := range ts.Steps {
		s := &ts.Steps[i]
		add(s.Script)
		add(s.Args...)
		add(s.Command...)
		add(s.WorkingDir)
		for _, e := range s.Env {
			add(e.Value)
		}
		for _, p := range s.Params {
			add(p.Value.ArrayVal...)
			for _, v := range p.Value.ObjectVal {
				add(v)
			}
			add(p.Value.StringVal)
		}
	}
	for i := range ts.Sidecars {
		s := &ts.Sidecars[i]
		add(s.Script)
		add(s.Args...)
		add(s.Command...)
		add(s.WorkingDir)
		for _, e := range s.Env {
			add(e.Value)
		}
	}
	if t := ts.StepTemplate; t != nil {
		add(t.Args...)
		add(t.Command...)
		add(t.WorkingDir)
		for _, e := range t.Env {
			add(e.Value)
		}
	}
	if len(locations) == 0 {
		return nil, nil
	}
	slices.Sort(locations)
	locations = slices.Compact(locations)
	var used []string
	for _, s := range locations {
		for _, m := range workspaceRef.FindAllStringSubmatch(s, -1) {
			name := ""
			for j, g := range workspaceRefGroups {
				val := m[g]
				// Dot notation allows at most two components after the prefix.
				if j == 0 && strings.Contains(val, ".") {
					if len(strings.Split(val, ".")) > 2 {
						return nil, fmt.Errorf("Error while extracting workspace: %s",
							fmt.Sprintf(`Invalid referencing of parameters in "%s"! Only two dot-separated components after the prefix "%s" are allowed.`, s, "workspaces"))
					}
					name, _, _ = strings.Cut(val, ".")
					break
				}
				if val != "" {
					name = val
					break
				}
			}
			used = append(used, name)
		}
	}
	slices.Sort(used)
	return slices.Compact(used), nil
}
