package e2e

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestVerificationPolicyLeavesReferencedRunUnchanged: in a namespace with a
// VerificationPolicy (Tekton's CRD, served by the real API server) a run
// whose Pipeline and Tasks are referenced keeps them referenced, so Tekton
// still verifies them; a run of embedded specs, which Tekton never
// verifies, is still converted. The policy is created right before the run:
// the webhook must see it even before its informer has.
func TestVerificationPolicyLeavesReferencedRunUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	require.NoError(t, e.c.Create(ctx, e.load(t, "task-make.yaml")))
	require.NoError(t, e.c.Create(ctx, e.load(t, "pipeline-build.yaml")))
	data, err := readFixture("verification-policy.yaml")
	require.NoError(t, err)
	policy := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal(data, &policy.Object))
	policy.SetNamespace(e.ns)
	require.NoError(t, e.c.Create(ctx, policy))

	got := e.get(t, e.create(t, "by-name-run.yaml", optIn()))
	require.NotContains(t, got.Annotations, transform.AnnotationConverted)
	require.Contains(t, got.Annotations[transform.AnnotationSkippedReason], webhook.ReasonVerificationPolicy)
	require.Contains(t, got.Annotations[transform.AnnotationSkippedReason], "signed-by-platform")
	require.NotNil(t, got.Spec.PipelineRef, "the Pipeline stays referenced, so Tekton verifies it")
	require.NotNil(t, got.Spec.Workspaces[0].VolumeClaimTemplate, "the run keeps its PVC")
	require.Contains(t, e.warnings.all(), webhook.ReasonVerificationPolicy)

	requireConverted(t, e.get(t, e.create(t, "inline-run.yaml", optIn())))
}
