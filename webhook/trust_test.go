package webhook_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// policies stands in for the namespace's VerificationPolicies.
type policies struct {
	names []string
	err   error
}

func (p policies) VerificationPolicies(context.Context, string) ([]string, error) {
	return p.names, p.err
}

func TestVerificationPolicy(t *testing.T) {
	c := fakeCluster(t, "testdata/converted-by-name/cluster.yaml")
	handle := func(t *testing.T, input string, p policies) admission.Response {
		review := readReview(t, input)
		h := &webhook.Handler{
			Options:  testOptions,
			Resolver: &resolve.Resolver{Cache: c, Client: c, Live: c, Log: testr.New(t)},
			Policies: p,
			Log:      testr.New(t),
		}
		return h.Handle(context.Background(), admission.Request{AdmissionRequest: *review.Request})
	}
	patchesAnnotation := func(resp admission.Response, key string) bool {
		for _, op := range resp.Patches {
			if strings.Contains(op.Path, strings.ReplaceAll(key, "/", "~1")) {
				return true
			}
			if m, ok := op.Value.(map[string]any); ok {
				if _, ok := m[key]; ok {
					return true
				}
			}
		}
		return false
	}

	t.Run("references are left for Tekton to verify", func(t *testing.T) {
		resp := handle(t, "testdata/converted-by-name/input.yaml", policies{names: []string{"signed", "other"}})
		require.True(t, resp.Allowed)
		require.Contains(t, strings.Join(resp.Warnings, "\n"), webhook.ReasonVerificationPolicy+": namespace team-a has VerificationPolicies (signed and 1 more)")
		require.True(t, patchesAnnotation(resp, transform.AnnotationSkippedReason))
		require.False(t, patchesAnnotation(resp, transform.AnnotationConverted))
	})
	t.Run("no policy: converted", func(t *testing.T) {
		resp := handle(t, "testdata/converted-by-name/input.yaml", policies{})
		require.True(t, patchesAnnotation(resp, transform.AnnotationConverted))
	})
	t.Run("embedded specs bypass nothing: converted", func(t *testing.T) {
		resp := handle(t, "testdata/converted-inline/input.yaml", policies{names: []string{"signed"}})
		require.True(t, patchesAnnotation(resp, transform.AnnotationConverted))
	})
	t.Run("policies unknown: unchanged", func(t *testing.T) {
		resp := handle(t, "testdata/converted-by-name/input.yaml", policies{err: errors.New("forbidden")})
		require.True(t, resp.Allowed)
		require.Empty(t, resp.Patches)
		require.Contains(t, strings.Join(resp.Warnings, "\n"), "cannot read the namespace's VerificationPolicies")
	})
}
