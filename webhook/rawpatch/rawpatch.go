// Package rawpatch computes the JSON patch an admission webhook returns, against
// the raw request object rather than a typed round trip of it.
//
// Decoding the request into Go types and marshalling it back is lossy in both
// directions: fields our Tekton types do not know (a newer Tekton on the
// cluster) disappear, and zero-value structs without omitempty appear
// (taskRunTemplate: {}, metadata: {creationTimestamp: null}). A patch diffed
// from that round trip would delete the former and add the latter (the trap
// konflux-ci/tekton-kueue#319 describes). Instead this package does a
// three-way merge: the difference between the typed object before and after
// the conversion (where the round-trip artefacts cancel out) is replayed onto
// the raw object, so everything the conversion did not touch stays byte-for-byte
// what the user wrote.
package rawpatch

import (
	"fmt"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform/prune"
	"gomodules.xyz/jsonpatch/v2"
)

// Patch returns the JSON patch that turns raw into raw plus the changes that
// turned before into after. before and after are typed objects (or anything
// encoding/json marshals) of the same kind and version as raw.
func Patch(raw []byte, before, after any) ([]jsonpatch.Operation, error) {
	r, err := prune.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding raw object: %w", err)
	}
	b, err := generic(before)
	if err != nil {
		return nil, fmt.Errorf("encoding object before conversion: %w", err)
	}
	a, err := generic(after)
	if err != nil {
		return nil, fmt.Errorf("encoding object after conversion: %w", err)
	}
	merged, _ := Merge(r, true, b, a)
	return diff("", r, merged, nil), nil
}

// generic is prune.Generic: the typed objects are encoded as offline
// convert encodes them.
func generic(v any) (any, error) { return prune.Generic(v) }

// Merge replays the change from before to after onto raw (present tells
// whether raw exists at this position) and returns the result and whether it
// is present. Values are generic JSON (map[string]any, []any, scalars).
//
//   - where before equals after, raw is kept as it is (present or not), so
//     unknown fields survive and round-trip artefacts never appear;
//   - object keys of raw that the typed objects do not know are kept;
//   - keys the conversion removed are removed;
//   - content that exists only in after is added without null values and
//     empty objects, which are round-trip artefacts there too, except those
//     that mean something (package prune, shared with offline convert).
func Merge(raw any, present bool, before, after any) (any, bool) {
	return merge("", "", raw, present, before, after)
}

// merge is Merge for the value under key in an object under parent (which
// decide whether an empty object is meaningful: prune.KeepsEmpty).
func merge(parent, key string, raw any, present bool, before, after any) (any, bool) {
	if equal(before, after) {
		return raw, present
	}
	switch a := after.(type) {
	case map[string]any:
		bm, _ := before.(map[string]any)
		rm, _ := raw.(map[string]any)
		if !present || rm == nil {
			if bm == nil {
				return prune.Under(parent, key, a)
			}
			rm = nil
		}
		out := make(map[string]any, len(a)+len(rm))
		for k, rv := range rm {
			_, inB := bm[k]
			_, inA := a[k]
			if !inB && !inA {
				out[k] = rv // unknown to our types: keep
			}
		}
		for k, av := range a {
			rv, inR := rm[k]
			var bv any
			if bm != nil {
				bv = bm[k]
			}
			if v, ok := merge(key, k, rv, inR, bv, av); ok {
				out[k] = v
			}
		}
		// Keys in before but not after were removed by the conversion.
		return out, true
	case []any:
		bs, _ := before.([]any)
		rs, _ := raw.([]any)
		if !present || len(rs) != len(bs) {
			rs = nil // positions of raw no longer line up with before
		}
		match := align(bs, a)
		out := make([]any, 0, len(a))
		for i, av := range a {
			j := match[i]
			if j < 0 {
				v, ok := prune.Under(key, "", av)
				if !ok {
					v = av
				}
				out = append(out, v)
				continue
			}
			var rv any
			if rs != nil {
				rv = rs[j]
			}
			v, ok := merge(key, "", rv, rs != nil, bs[j], av)
			if !ok {
				v = av
			}
			out = append(out, v)
		}
		return out, true
	case nil:
		// after is null: a field cleared to its zero value.
		if before == nil {
			return raw, present
		}
		return nil, false
	default:
		return after, true
	}
}

// align maps each index of after to the index of before it is a changed (or
// unchanged) version of, or -1 for new elements. Tekton lists (tasks, steps,
// params, workspaces, volumes) are keyed by name, so elements with a name are
// matched by name; otherwise equal-length lists are matched by position and
// others by equality.
func align(before, after []any) []int {
	match := make([]int, len(after))
	if byName, ok := names(before); ok {
		if _, ok := names(after); ok {
			for i, av := range after {
				match[i] = -1
				if j, found := byName[av.(map[string]any)["name"].(string)]; found {
					match[i] = j
				}
			}
			return match
		}
	}
	if len(before) == len(after) {
		for i := range after {
			match[i] = i
		}
		return match
	}
	used := make([]bool, len(before))
	next := 0
	for i, av := range after {
		match[i] = -1
		for j := next; j < len(before); j++ {
			if !used[j] && equal(before[j], av) {
				match[i], used[j], next = j, true, j+1
				break
			}
		}
	}
	return match
}

// names indexes a list of objects by their distinct, non-empty "name".
func names(list []any) (map[string]int, bool) {
	if len(list) == 0 {
		return map[string]int{}, true
	}
	idx := make(map[string]int, len(list))
	for i, v := range list {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := m["name"].(string)
		if !ok || n == "" {
			return nil, false
		}
		if _, dup := idx[n]; dup {
			return nil, false
		}
		idx[n] = i
	}
	return idx, true
}
