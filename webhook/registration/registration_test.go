package registration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

func TestConfiguration(t *testing.T) {
	mwc := MutatingWebhookConfiguration(Values{ServiceName: "s", ServiceNamespace: "n", ResolutionTimeout: 8 * time.Second})
	require.Len(t, mwc.Webhooks, 2)
	for _, w := range mwc.Webhooks {
		require.Equal(t, admissionregistrationv1.Equivalent, *w.MatchPolicy)
		require.Equal(t, admissionregistrationv1.IfNeededReinvocationPolicy, *w.ReinvocationPolicy)
		require.Equal(t, admissionregistrationv1.SideEffectClassNoneOnDryRun, *w.SideEffects)
		require.Equal(t, admissionregistrationv1.Ignore, *w.FailurePolicy)
		require.Equal(t, int32(10), *w.TimeoutSeconds)
		require.Equal(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, w.Rules[0].Operations)
		require.Equal(t, []string{"v1"}, w.Rules[0].APIVersions)
		require.Equal(t, Path, *w.ClientConfig.Service.Path)
	}
	// "true" converts, "audit" audits: both values reach the webhook, from
	// a run's label or its namespace's; "false" on a run keeps it away.
	require.Equal(t, []string{"true", "audit"}, mwc.Webhooks[0].ObjectSelector.MatchExpressions[0].Values)
	require.Equal(t, []string{"true", "audit", "false"}, mwc.Webhooks[1].ObjectSelector.MatchExpressions[0].Values)
	require.Equal(t, []string{"true", "audit"}, mwc.Webhooks[1].NamespaceSelector.MatchExpressions[0].Values)
	require.Equal(t, int32(MaxTimeoutSeconds), TimeoutSeconds(time.Minute))
	require.Equal(t, int32(3), TimeoutSeconds(500*time.Millisecond))
}
