package resolve

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestSameNamespaceCluster(t *testing.T) {
	ref := func(resolver, namespace string, names ...string) resolution.Reference {
		r := resolution.Reference{Kind: "Task", Name: "t", Namespace: namespace, RunNamespace: "a", Resolver: resolver}
		for _, n := range names {
			r.Params = append(r.Params, v1.Param{Name: n, Value: *v1.NewStructuredValues("x")})
		}
		return r
	}
	require.True(t, sameNamespaceCluster(ref("cluster", "a", "kind", "name")))
	require.True(t, sameNamespaceCluster(ref("cluster", "a", "kind", "name", "namespace")))
	require.False(t, sameNamespaceCluster(ref("cluster", "other", "kind", "name", "namespace")), "other namespaces go through the resolver and its namespace policy")
	require.False(t, sameNamespaceCluster(ref("cluster", "a", "name", "cache")), "a param we do not know: the resolver decides")
	require.False(t, sameNamespaceCluster(ref("git", "a", "name")))
}
