// Package params substitutes a PipelineRun's params (and its Pipeline's
// defaults) into resolver params, the way Tekton does before it resolves a
// reference. The webhook and the offline convert both use it, so a reference
// resolves to the same thing in both.
package params

import (
	"fmt"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/substitution"
)

// maxDefaultDepth bounds how deep pipeline param defaults may refer to each
// other (Tekton stops at the same depth).
const maxDefaultDepth = 10

// Replacements returns Tekton's $(params...) replacements for the run's params
// and, when spec is given, the defaults of the pipeline params the run does
// not set (a default may refer to other params).
func Replacements(run *v1.PipelineRun, spec *v1.PipelineSpec) map[string]string {
	out := map[string]string{}
	set := map[string]bool{}
	add := func(name, value string) {
		for _, key := range keys(name) {
			out[key] = value
		}
	}
	for _, p := range run.Spec.Params {
		set[p.Name] = true
		if !addStructured(out, p.Name, p.Value) {
			add(p.Name, p.Value.StringVal)
		}
	}
	if spec == nil {
		return out
	}
	pending := map[string]string{}
	for _, p := range spec.Params {
		if set[p.Name] || p.Default == nil {
			continue
		}
		if !addStructured(out, p.Name, *p.Default) {
			pending[p.Name] = p.Default.StringVal
		}
	}
	// Defaults that refer to other params are substituted until stable.
	for range maxDefaultDepth {
		for name, v := range pending {
			add(name, v)
		}
		changed := false
		for name, v := range pending {
			if nv := substitution.ApplyReplacements(v, out); nv != v {
				pending[name], changed = nv, true
			}
		}
		if !changed {
			break
		}
	}
	return out
}

// addStructured adds the replacements of an array or object value and
// reports whether it did; a string value is left to the caller.
func addStructured(out map[string]string, name string, v v1.ParamValue) bool {
	switch v.Type {
	case v1.ParamTypeArray:
		for i, item := range v.ArrayVal {
			for _, key := range keys(name) {
				out[fmt.Sprintf("%s[%d]", key, i)] = item
			}
		}
	case v1.ParamTypeObject:
		for k, item := range v.ObjectVal {
			out["params."+name+"."+k] = item
		}
	default:
		return false
	}
	return true
}

// keys are the three spellings Tekton accepts for a param reference.
func keys(name string) []string {
	return []string{"params." + name, fmt.Sprintf("params[%q]", name), fmt.Sprintf("params['%s']", name)}
}

// Substitute applies replacements to resolver params and fails when a
// reference is left that only exists at run time (context, task results).
func Substitute(params v1.Params, repl map[string]string) (v1.Params, error) {
	out := make(v1.Params, 0, len(params))
	for _, p := range params {
		p = *p.DeepCopy()
		switch p.Value.Type {
		case v1.ParamTypeArray:
			for i, v := range p.Value.ArrayVal {
				p.Value.ArrayVal[i] = substitution.ApplyReplacements(v, repl)
			}
		case v1.ParamTypeObject:
			for k, v := range p.Value.ObjectVal {
				p.Value.ObjectVal[k] = substitution.ApplyReplacements(v, repl)
			}
		default:
			p.Value.StringVal = substitution.ApplyReplacements(p.Value.StringVal, repl)
		}
		if ref := unresolved(p.Value); ref != "" {
			return nil, fmt.Errorf("resolver param %q refers to %s, which is only known when the run executes", p.Name, ref)
		}
		out = append(out, p)
	}
	return out, nil
}

func unresolved(v v1.ParamValue) string {
	check := func(s string) string {
		if i := strings.Index(s, "$("); i >= 0 {
			if j := strings.Index(s[i:], ")"); j > 0 {
				return s[i : i+j+1]
			}
			return s[i:]
		}
		return ""
	}
	if r := check(v.StringVal); r != "" {
		return r
	}
	for _, s := range v.ArrayVal {
		if r := check(s); r != "" {
			return r
		}
	}
	for _, s := range v.ObjectVal {
		if r := check(s); r != "" {
			return r
		}
	}
	return ""
}

// Map flattens params for transform.Source (arrays and objects as JSON-ish text).
func Map(params v1.Params) map[string]string {
	if len(params) == 0 {
		return nil
	}
	out := make(map[string]string, len(params))
	for _, p := range params {
		switch p.Value.Type {
		case v1.ParamTypeArray:
			out[p.Name] = "[" + strings.Join(p.Value.ArrayVal, ",") + "]"
		case v1.ParamTypeObject:
			data, _ := p.Value.MarshalJSON()
			out[p.Name] = string(data)
		default:
			out[p.Name] = p.Value.StringVal
		}
	}
	return out
}
