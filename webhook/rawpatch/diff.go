package rawpatch

import (
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
)

// diff returns the operations that turn from into to. Merge returns raw's
// own subtrees wherever nothing changed, so identical maps and slices are
// recognised by identity before any deep comparison: the walk only descends
// where the conversion changed something. A list whose length changed is
// replaced as a whole (its kept elements are raw's own, so nothing is lost).
func diff(path string, from, to any, ops []jsonpatch.Operation) []jsonpatch.Operation {
	if same(from, to) {
		return ops
	}
	switch t := to.(type) {
	case map[string]any:
		f, ok := from.(map[string]any)
		if !ok {
			break
		}
		// Only keys removed, added or not the very same value can make an
		// operation: only those are sorted (for a stable order of ops).
		var removed, changed []string
		for k := range f {
			if _, kept := t[k]; !kept {
				removed = append(removed, k)
			}
		}
		for k, tv := range t {
			if fv, had := f[k]; !had || !same(fv, tv) {
				changed = append(changed, k)
			}
		}
		slices.Sort(removed)
		slices.Sort(changed)
		for _, k := range removed {
			ops = append(ops, jsonpatch.NewOperation("remove", path+"/"+escape(k), nil))
		}
		for _, k := range changed {
			fv, had := f[k]
			if !had {
				ops = append(ops, jsonpatch.NewOperation("add", path+"/"+escape(k), t[k]))
				continue
			}
			ops = diff(path+"/"+escape(k), fv, t[k], ops)
		}
		return ops
	case []any:
		f, ok := from.([]any)
		if !ok || len(f) != len(t) {
			break
		}
		for i := range t {
			ops = diff(path+"/"+strconv.Itoa(i), f[i], t[i], ops)
		}
		return ops
	}
	if equal(from, to) {
		return ops
	}
	if path == "" {
		// The root cannot be replaced by a JSON patch "replace" in every
		// implementation; it never happens for objects, which are maps.
		return append(ops, jsonpatch.NewOperation("replace", "", to))
	}
	return append(ops, jsonpatch.NewOperation("replace", path, to))
}

// same is true for the very same map or slice, or equal scalars.
func same(a, b any) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		return ok && reflect.ValueOf(av).UnsafePointer() == reflect.ValueOf(bv).UnsafePointer()
	case []any:
		bv, ok := b.([]any)
		return ok && len(av) == len(bv) && (len(av) == 0 || &av[0] == &bv[0])
	case nil, bool, float64, string:
		return a == b
	}
	return false
}

// escape encodes a key as a JSON pointer token (RFC 6901).
func escape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// equal is reflect.DeepEqual for generic JSON values (maps, lists, scalars),
// without reflection where it can: it ran at every level of the merge.
func equal(a, b any) bool {
	switch av := a.(type) {
	case nil:
		return b == nil
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case float64:
		bv, ok := b.(float64)
		return ok && av == bv
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || (av == nil) != (bv == nil) || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !equal(x, y) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || (av == nil) != (bv == nil) || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equal(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
