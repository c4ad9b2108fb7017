// Package registration holds the MutatingWebhookConfiguration of the webhook:
// every value the API server needs to call it, in one place that the e2e
// tests, the self-managed TLS mode and the Helm chart (through
// `webhook serve --print-webhook-configuration`) all reuse.
package registration

import (
	"math"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	// Path is where the server serves PipelineRun admission.
	Path = "/mutate-tekton-dev-v1-pipelinerun"
	// DefaultName is the MutatingWebhookConfiguration's name.
	DefaultName = "tekton-oci-transport"
	// RunWebhookName and NamespaceWebhookName name its two webhooks. Two are
	// needed because one webhook's objectSelector and namespaceSelector are
	// ANDed, and the opt-in is "run label OR namespace label".
	RunWebhookName       = "run.oci-transport.tekton.dev"
	NamespaceWebhookName = "namespace.oci-transport.tekton.dev"

	// MaxTimeoutSeconds is the API server's limit for timeoutSeconds.
	MaxTimeoutSeconds = 30
	// TimeoutMargin is added to the resolution deadline so the handler can
	// still answer (unchanged + warning) after resolution gave up.
	TimeoutMargin = 2 * time.Second
)

// Values are the installation-specific parts of the configuration.
type Values struct {
	// Name of the MutatingWebhookConfiguration (DefaultName when empty).
	Name string
	// Service the API server calls (ignored when URL is set).
	ServiceName, ServiceNamespace string
	ServicePort                   int32
	// URL replaces the service reference (out-of-cluster servers, tests).
	URL string
	// CABundle is the PEM CA that signed the serving certificate.
	CABundle []byte
	// LabelKey opts runs and namespaces in (transform.EnabledLabel when empty).
	LabelKey string
	// ResolutionTimeout is the handler's resolution deadline; timeoutSeconds
	// is derived from it.
	ResolutionTimeout time.Duration
	// FailurePolicy is Ignore unless set: a run the webhook cannot serve still
	// works on its PVC.
	FailurePolicy admissionregistrationv1.FailurePolicyType
}

// TimeoutSeconds is the webhook timeout for a resolution deadline: the
// deadline plus TimeoutMargin, rounded up, capped at the API server's limit.
func TimeoutSeconds(resolution time.Duration) int32 {
	s := math.Ceil((resolution + TimeoutMargin).Seconds())
	if s > MaxTimeoutSeconds {
		s = MaxTimeoutSeconds
	}
	if s < 1 {
		s = 1
	}
	return int32(s)
}

// MaxResolutionTimeout is the longest resolution deadline that still fits the
// API server's webhook timeout.
const MaxResolutionTimeout = MaxTimeoutSeconds*time.Second - TimeoutMargin

// DefaultResolutionTimeout is the webhook's --resolution-timeout by default
// (the chart's webhook.resolutionTimeoutSeconds), which report uses too.
const DefaultResolutionTimeout = 8 * time.Second

// MutatingWebhookConfiguration builds the configuration for v.
func MutatingWebhookConfiguration(v Values) *admissionregistrationv1.MutatingWebhookConfiguration {
	name := v.Name
	if name == "" {
		name = DefaultName
	}
	key := v.LabelKey
	if key == "" {
		key = transform.EnabledLabel
	}
	policy := v.FailurePolicy
	if policy == "" {
		policy = admissionregistrationv1.Ignore
	}
	client := admissionregistrationv1.WebhookClientConfig{CABundle: v.CABundle}
	if v.URL != "" {
		client.URL = ptr.To(v.URL)
	} else {
		client.Service = &admissionregistrationv1.ServiceReference{
			Name: v.ServiceName, Namespace: v.ServiceNamespace, Path: ptr.To(Path), Port: ptr.To(v.ServicePort),
		}
		if v.ServicePort == 0 {
			client.Service.Port = ptr.To[int32](443)
		}
	}
	webhook := func(name string, object, namespace *metav1.LabelSelector) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:         name,
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{"tekton.dev"},
					APIVersions: []string{"v1"},
					Resources:   []string{"pipelineruns"},
					Scope:       ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			// Equivalent: a tekton.dev/v1beta1 create is sent as v1.
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			ObjectSelector:          object,
			NamespaceSelector:       namespace,
			FailurePolicy:           ptr.To(policy),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(TimeoutSeconds(v.ResolutionTimeout)),
			AdmissionReviewVersions: []string{"v1"},
			// IfNeeded: when a later webhook changes the run we look again;
			// the conversion is idempotent.
			ReinvocationPolicy: ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
		}
	}
	in := func(values ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}}}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			// A run labelled "true" (convert) or "audit", in any namespace.
			webhook(RunWebhookName, in("true", "audit"), &metav1.LabelSelector{}),
			// A run without such a label (NotIn also matches a missing
			// label) in a namespace labelled "true" or "audit"; "false" on
			// the run opts out.
			webhook(NamespaceWebhookName,
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true", "audit", "false"}}}},
				in("true", "audit")),
		},
	}
}
