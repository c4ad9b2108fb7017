package webhook

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The run's own "true", "audit" or "false" decides; otherwise the
// namespace's "true" or "audit" opts it in.
func TestDecideOptIn(t *testing.T) {
	const key = "oci-transport.tekton.dev/enabled"
	l := func(v string) map[string]string {
		if v == "" {
			return nil
		}
		return map[string]string{key: v}
	}
	for _, tc := range []struct {
		run, namespace string
		want           OptIn
	}{
		{"", "", NotOptedIn},
		{"", "true", OptInConverted},
		{"", "audit", OptInAudited},
		{"", "false", NotOptedIn},
		{"", "yes", NotOptedIn},
		{"true", "", OptInConverted},
		{"true", "audit", OptInConverted},
		{"audit", "", OptInAudited},
		{"audit", "true", OptInAudited},
		{"false", "true", OptedOut},
		{"false", "audit", OptedOut},
		{"yes", "audit", OptInAudited}, // a value we do not know: the namespace decides
	} {
		require.Equal(t, tc.want, DecideOptIn(l(tc.run), l(tc.namespace), key), "run %q, namespace %q", tc.run, tc.namespace)
	}
}
