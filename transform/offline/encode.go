package offline

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// keepEmpty lists keys whose empty object means something and must survive
// pruning (`emptyDir: {}` is how a workspace asks for an emptyDir).
var keepEmpty = map[string]bool{"emptyDir": true, "value": true, "default": true}

// EncodeYAML writes an object as YAML without the zero values that Go's
// typed round trip adds and nobody wrote (`status: {}`, `taskRunTemplate: {}`,
// `computeResources: {}`, an embedded task's `metadata: {}` and `spec: null`).
func EncodeYAML(obj any) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	pruned, _ := prune(tree)
	return yaml.Marshal(pruned)
}

// prune drops nulls and empty objects, bottom up; the bool is false when v
// itself is empty and should be dropped by its parent.
func prune(v any) (any, bool) {
	switch t := v.(type) {
	case nil:
		return nil, false
	case map[string]any:
		for k, child := range t {
			if p, keep := prune(child); keep {
				t[k] = p
			} else if m, isMap := child.(map[string]any); isMap && len(m) == 0 && keepEmpty[k] {
				t[k] = m
			} else {
				delete(t, k)
			}
		}
		return t, len(t) > 0
	case []any:
		for i, child := range t {
			p, _ := prune(child) // an element keeps its place even when empty
			if p == nil {
				p = map[string]any{}
			}
			t[i] = p
		}
		return t, true
	default:
		return v, true
	}
}
