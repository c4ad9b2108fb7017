package offline

import (
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/prune"
	"sigs.k8s.io/yaml"
)

// EncodeYAML writes an object as YAML without the zero values that Go's
// typed round trip adds and nobody wrote (`status: {}`, `taskRunTemplate: {}`,
// `computeResources: {}`, an embedded task's `metadata: {}` and `spec: null`),
// pruned by the same rules as the webhook's patch (package prune).
func EncodeYAML(obj any) ([]byte, error) {
	tree, err := prune.Generic(obj)
	if err != nil {
		return nil, err
	}
	pruned, _ := prune.Value("", tree)
	return yaml.Marshal(pruned)
}
