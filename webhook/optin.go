package webhook

import (
	"context"
	"fmt"

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

// OptIn is what a run's and its namespace's opt-in labels ask for.
type OptIn string

const (
	// NotOptedIn: neither label opts the run in.
	NotOptedIn OptIn = ""
	// OptedOut: the run's own label is "false".
	OptedOut OptIn = "opted-out"
	// OptInConverted: "true" decides; the handler's Mode still applies.
	OptInConverted OptIn = "convert"
	// OptInAudited: "audit" decides; the run is audited whatever the Mode.
	OptInAudited OptIn = "audit"
)

// In reports whether the run opted in at all.
func (o OptIn) In() bool { return o == OptInConverted || o == OptInAudited }

// DecideOptIn applies the opt-in rule to a run's and its namespace's
// labels: the run's own label decides when it is "true", "audit" or
// "false"; otherwise the namespace's label must be "true" or "audit".
func DecideOptIn(runLabels, namespaceLabels map[string]string, key string) OptIn {
	if o, ok := optInValue(runLabels[key]); ok {
		return o
	}
	if o, ok := optInValue(namespaceLabels[key]); ok && o != OptedOut {
		return o
	}
	return NotOptedIn
}

func optInValue(v string) (OptIn, bool) {
	switch v {
	case OptInConvert:
		return OptInConverted, true
	case OptInAudit:
		return OptInAudited, true
	case OptOut:
		return OptedOut, true
	}
	return NotOptedIn, false
}

// optIn applies DecideOptIn, reading the namespace's labels only when the
// run's own label does not decide. The webhook configuration's selectors
// express the same rule, but they can be edited, and a run can reach us
// through another configuration.
func (h *Handler) optIn(ctx context.Context, namespace string, runLabels map[string]string) (OptIn, error) {
	if _, decided := optInValue(runLabels[h.labelKey()]); decided || h.Namespaces == nil || namespace == "" {
		return DecideOptIn(runLabels, nil, h.labelKey()), nil
	}
	labels, err := h.Namespaces.NamespaceLabels(ctx, namespace)
	if err != nil {
		return NotOptedIn, err
	}
	return DecideOptIn(runLabels, labels, h.labelKey()), nil
}
