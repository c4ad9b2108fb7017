// Package prune drops what Go's typed round trip of a Tekton object adds and
// nobody wrote (nulls, `status: {}`, `taskRunTemplate: {}`, an embedded
// task's `metadata: {}`), and keeps the empty objects that mean something.
// The webhook's patch (webhook/rawpatch) and the offline `convert` output
// (transform/offline) both use it, so a spec inlined by either comes out the
// same.
package prune

import (
	"encoding/json"
	"fmt"
)

// Generic encodes a typed object as generic JSON (maps, lists, scalars), and
// gives back what the encoding loses that Tekton needs: `properties: {}` of
// an object param, an empty map that omitempty drops. Tekton rejects an
// object param without properties, so an inlined Task that declared
// `properties: {}` would be rejected once stored.
func Generic(obj any) (any, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", obj, err)
	}
	out, err := decode(data, true) // with restoreProperties
	if err != nil {
		return nil, fmt.Errorf("decoding %T: %w", obj, err)
	}
	return out, nil
}

// restoreProperties adds `properties: {}` to every param declaration of type
// object without one. A valid object param always has properties (Tekton's
// validation requires them), so a missing one is one that was empty.
func restoreProperties(key string, v any) {
	switch t := v.(type) {
	case map[string]any:
		if key == "params" && t["type"] == "object" && t["properties"] == nil {
			t["properties"] = map[string]any{}
		}
		for k, child := range t {
			restoreProperties(k, child)
		}
	case []any:
		for _, child := range t {
			restoreProperties(key, child) // elements are what key lists
		}
	}
}

// Value returns v without nulls and meaningless empty objects, bottom up,
// without changing v. key is the key v sits under ("" for the root or a list
// element); ok is false when nothing is left of v and its parent should drop
// it. A list element that is left empty stays, as {}, to keep positions.
func Value(key string, v any) (any, bool) {
	return Under("", key, v)
}

// Under is Value for v under key in an object that is itself under parent
// (an entry of `properties` is kept empty).
func Under(parent, key string, v any) (any, bool) {
	switch t := v.(type) {
	case nil:
		return nil, false
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, child := range t {
			if p, ok := Under(key, k, child); ok {
				out[k] = p
			}
		}
		if len(out) == 0 && !KeepsEmpty(parent, key) {
			return nil, false
		}
		return out, true
	case []any:
		out := make([]any, len(t))
		for i, child := range t {
			p, ok := Under(key, "", child)
			if !ok {
				p = map[string]any{}
			}
			out[i] = p
		}
		return out, true
	default:
		return v, true
	}
}

// KeepsEmpty reports whether an empty object under key (in an object under
// parent) is a value rather than a round-trip artefact:
//   - `emptyDir: {}` asks for an emptyDir;
//   - `default: {}` and `value: {}` are an object param's empty default and
//     value;
//   - `properties: {}` and each `properties: {k: {}}` entry declare an
//     object param's (or result's) keys, type string by default: Tekton
//     rejects an object param without properties, so dropping them breaks
//     an inlined Task.
func KeepsEmpty(parent, key string) bool {
	switch key {
	case "emptyDir", "default", "value", "properties":
		return true
	}
	return parent == "properties"
}
