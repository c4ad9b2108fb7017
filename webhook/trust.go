package webhook

import (
	"context"
	"fmt"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReasonVerificationPolicy leaves a run unchanged whose conversion would
// inline a reference in a namespace with a VerificationPolicy: Tekton
// verifies a referenced Task or Pipeline against the policies of the run's
// namespace before running it, and never verifies an embedded spec, so
// inlining would bypass trusted-resources verification.
const ReasonVerificationPolicy = "VerificationPolicyInNamespace"

// VerificationPolicyGVK is what CachedVerificationPolicies reads (Tekton's
// trusted resources, config/300-crds/300-verificationpolicy.yaml).
var VerificationPolicyGVK = schema.GroupVersionKind{Group: "tekton.dev", Version: "v1alpha1", Kind: "VerificationPolicy"}

// VerificationPolicies names the VerificationPolicies of a namespace.
type VerificationPolicies interface {
	VerificationPolicies(ctx context.Context, namespace string) ([]string, error)
}

// CachedVerificationPolicies lists VerificationPolicies through a
// metadata-only cache: whether one exists is all the webhook needs, and a
// policy's keys and patterns are none of its business.
type CachedVerificationPolicies struct {
	Reader client.Reader
	// Live, when set, is asked when the cache knows none (a policy applied
	// together with the run, before the informer has seen it): a false
	// "none" would bypass verification, a live list costs one call.
	Live client.Reader
}

func (c CachedVerificationPolicies) VerificationPolicies(ctx context.Context, namespace string) ([]string, error) {
	names, err := listNames(ctx, c.Reader, namespace)
	if err == nil && len(names) == 0 && c.Live != nil {
		names, err = listNames(ctx, c.Live, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("listing VerificationPolicies in namespace %s: %w", namespace, err)
	}
	return names, nil
}

func listNames(ctx context.Context, r client.Reader, namespace string) ([]string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(VerificationPolicyGVK.GroupVersion().WithKind(VerificationPolicyGVK.Kind + "List"))
	if err := r.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(list.Items))
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	return names, nil
}

// inlinesReference reports whether converting run would replace a reference
// with its spec: a pipelineRef, or a taskRef of a task that binds a converted
// workspace. Only those are verified by Tekton; converting a run of embedded
// specs bypasses nothing.
func inlinesReference(run *v1.PipelineRun) bool {
	if run.Spec.PipelineRef != nil {
		return true
	}
	return len(transform.TasksNeeded(run, run.Spec.PipelineSpec)) > 0
}

// verificationPolicyBlocks returns the message of a run left unchanged for
// ReasonVerificationPolicy, or "" when the run may be converted.
func (h *Handler) verificationPolicyBlocks(ctx context.Context, run *v1.PipelineRun, namespace string) (string, error) {
	if h.Policies == nil || !inlinesReference(run) {
		return "", nil
	}
	names, err := h.Policies.VerificationPolicies(ctx, namespace)
	if err != nil || len(names) == 0 {
		return "", err
	}
	return fmt.Sprintf("namespace %s has VerificationPolicies (%s): Tekton verifies the run's referenced Pipeline and Tasks against them, and inlining them would bypass that verification", namespace, names[0]+more(len(names)-1)), nil
}

func more(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" and %d more", n)
}
