package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func reserved(name string) bool { return strings.HasPrefix(name, ReservedPrefix) }

// checkReservedNames refuses a run whose own names start with the reserved
// prefix: injecting ours next to them could collide or be mistaken for ours.
func checkReservedNames(run *v1.PipelineRun, spec *v1.PipelineSpec) error {
	for _, p := range run.Spec.Params {
		if reserved(p.Name) {
			return refuse(ReasonReservedName, "run param %q uses the reserved prefix %q", p.Name, ReservedPrefix)
		}
	}
	for _, p := range spec.Params {
		if reserved(p.Name) {
			return refuse(ReasonReservedName, "pipeline param %q uses the reserved prefix %q", p.Name, ReservedPrefix)
		}
	}
	for _, pt := range allTasks(spec) {
		for _, p := range pt.Params {
			if reserved(p.Name) {
				return refuse(ReasonReservedName, "pipeline task %q param %q uses the reserved prefix %q", pt.Name, p.Name, ReservedPrefix)
			}
		}
		if pt.TaskSpec != nil {
			if err := checkTaskReservedNames(pt.Name, &pt.TaskSpec.TaskSpec); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkTaskReservedNames(task string, spec *v1.TaskSpec) error {
	check := func(what, name string) error {
		if reserved(name) {
			return refuse(ReasonReservedName, "task %q %s %q uses the reserved prefix %q", task, what, name, ReservedPrefix)
		}
		return nil
	}
	for _, p := range spec.Params {
		if err := check("param", p.Name); err != nil {
			return err
		}
	}
	for _, s := range spec.Steps {
		if err := check("step", s.Name); err != nil {
			return err
		}
	}
	for _, s := range spec.Sidecars {
		if err := check("sidecar", s.Name); err != nil {
			return err
		}
	}
	for _, v := range spec.Volumes {
		if err := check("volume", v.Name); err != nil {
			return err
		}
	}
	return nil
}

var notLabelChars = regexp.MustCompile(`[^a-z0-9-]+`)

// slug turns a workspace name into something usable in a step name (a DNS
// label) and a path component, at most max characters. When it had to change
// the name it appends a short hash of the original, so two workspaces never
// share a slug.
func slug(name string, max int) string {
	s := strings.Trim(notLabelChars.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if s == name && len(s) <= max {
		return s
	}
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])[:8]
	if room := max - len(h) - 1; len(s) > room {
		s = strings.TrimRight(s[:room], "-")
	}
	if s == "" {
		return h
	}
	return s + "-" + h
}

// paramSafe reports whether a name can be used in $(params.<name>) without
// the bracket syntax.
var paramSafe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_-]*$`).MatchString
