package webhook

import (
	"context"
	"fmt"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NamespaceLabels returns a namespace's labels.
type NamespaceLabels interface {
	NamespaceLabels(ctx context.Context, name string) (map[string]string, error)
}

// CachedNamespaces reads namespace labels through a metadata-only cache: the
// webhook needs nothing else of a namespace, and caching only metadata keeps
// memory flat on clusters with many namespaces.
type CachedNamespaces struct {
	Reader client.Reader
	// Live, when set, is asked when the cache does not know the namespace
	// yet (a run created right after its namespace).
	Live client.Reader
}

func (c CachedNamespaces) NamespaceLabels(ctx context.Context, name string) (map[string]string, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(NamespaceGVK)
	key := types.NamespacedName{Name: name}
	err := c.Reader.Get(ctx, key, ns)
	if apierrors.IsNotFound(err) && c.Live != nil {
		err = c.Live.Get(ctx, key, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return ns.Labels, nil
}

// optedIn applies the opt-in rule: the run's own label decides when it is
// "true" or "false"; otherwise the namespace's label must be "true". The
// webhook configuration's selectors express the same rule, but they can be
// edited, and a run can reach us through another configuration.
func (h *Handler) optedIn(ctx context.Context, namespace string, runLabels map[string]string) (bool, error) {
	if transform.OptedOut(runLabels, h.labelKey()) {
		return false, nil
	}
	if runLabels[h.labelKey()] == "true" {
		return true, nil
	}
	if h.Namespaces == nil || namespace == "" {
		return false, nil
	}
	labels, err := h.Namespaces.NamespaceLabels(ctx, namespace)
	if err != nil {
		return false, err
	}
	return labels[h.labelKey()] == "true", nil
}
