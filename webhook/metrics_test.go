package webhook

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// The resolver label takes what a user wrote in a run: anything but
// Tekton's own resolvers must collapse into "other".
func TestResolverLabelIsBounded(t *testing.T) {
	for in, want := range map[string]string{
		"name": "name", "git": "git", "hub": "hub", "bundles": "bundles", "cluster": "cluster", "http": "http",
		"": "other", "Git": "other", "my-resolver": "other", "x\ny": "other",
	} {
		require.Equal(t, want, ResolverLabel(in), "%q", in)
	}
	before := testutil.CollectAndCount(resolutionSeconds)
	for _, r := range []string{"a", "b", "c", "d"} {
		ObserveResolution("user-"+r, 0.1, nil)
	}
	require.LessOrEqual(t, testutil.CollectAndCount(resolutionSeconds), before+1, "four unknown resolvers add at most one series")
}

func TestBuildInfo(t *testing.T) {
	SetBuildInfo("v1.2.3")
	require.Equal(t, 1.0, testutil.ToFloat64(buildInfo.WithLabelValues("v1.2.3", goVersion())))
}

func goVersion() string { return runtime.Version() }

// The reason label takes the reasons a run is left unchanged; anything else
// (a skipped-reason a user wrote on a copied run) becomes "other".
func TestReasonLabelIsBounded(t *testing.T) {
	for in, want := range map[string]string{
		"TaskSpecMissing": "TaskSpecMissing", "ResolutionTimeout": "ResolutionTimeout",
		"VerificationPolicyInNamespace": "VerificationPolicyInNamespace", "InvalidPipelineRun": "InvalidPipelineRun",
		"ResultsBudgetReduced": "ResultsBudgetReduced", "": "other", "taskspecmissing": "other", "made up": "other",
	} {
		require.Equal(t, want, ReasonLabel(in), "%q", in)
	}
}
