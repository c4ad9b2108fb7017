package resolve

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestSameNamespaceCluster(t *testing.T) {
	p := func(kv ...string) v1.Params {
		var out v1.Params
		for i := 0; i < len(kv); i += 2 {
			out = append(out, v1.Param{Name: kv[i], Value: *v1.NewStructuredValues(kv[i+1])})
		}
		return out
	}
	_, name, ok := sameNamespaceCluster("cluster", p("kind", "task", "name", "t"), "Task", "a")
	require.True(t, ok)
	require.Equal(t, "t", name)
	_, _, ok = sameNamespaceCluster("cluster", p("kind", "task", "name", "t", "namespace", "other"), "Task", "a")
	require.False(t, ok, "other namespaces go through the resolver and its namespace policy")
	_, _, ok = sameNamespaceCluster("cluster", p("kind", "pipeline", "name", "t"), "Task", "a")
	require.False(t, ok)
	_, _, ok = sameNamespaceCluster("git", p("name", "t"), "Task", "a")
	require.False(t, ok)
}
