package webhook

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Outcomes of an admission, the values of the outcome label.
const (
	OutcomeConverted    = "converted"
	OutcomeUnchanged    = "unchanged" // opted in, not convertible: warning + annotation
	OutcomeDenied       = "denied"    // strict mode
	OutcomeNothing      = "nothing-to-convert"
	OutcomeAlready      = "already-converted"
	OutcomeNotOptedIn   = "not-opted-in"
	OutcomeIgnored      = "ignored" // not a PipelineRun CREATE
	OutcomeInvalid      = "invalid-object"
	OutcomePanic        = "panic"
	OutcomeInternalFail = "internal-error"
	// OutcomeAudited: audited (audit mode or an "audit" opt-in label),
	// admitted unchanged but for the audit annotations.
	OutcomeAudited = "audited"
)

// The values of the verdict and reason labels of oci_transport_verdicts_total.
const (
	verdictConvert   = "convert"
	verdictUnchanged = "leave-unchanged"
	reasonNone       = "none"
	reasonOther      = "other"
)

func verdictOf(audit string) string {
	if audit == AuditWouldConvert {
		return verdictConvert
	}
	return verdictUnchanged
}

// These join controller-runtime's own webhook metrics (request counts,
// latency, in-flight) on the same registry and /metrics endpoint.
var (
	admissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oci_transport_admissions_total",
		Help: "PipelineRun admissions by outcome.",
	}, []string{"outcome"})
	admissionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "oci_transport_admission_duration_seconds",
		Help:    "Time to answer a PipelineRun admission, by outcome.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"outcome"})
	resolutionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "oci_transport_resolution_duration_seconds",
		Help:    "Time to resolve one pipelineRef or taskRef, by resolver (name for plain references) and result.",
		Buckets: []float64{.0005, .001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"resolver", "result"})
	verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oci_transport_verdicts_total",
		Help: "Opted-in runs that bind a volumeClaimTemplate, by mode (convert: what was done; audit: what convert mode would have done), verdict (convert, leave-unchanged) and reason (why it is left unchanged, none when converted). A reinvocation or a copy answered from an earlier verdict is not counted again.",
	}, []string{"mode", "verdict", "reason"})
	panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "oci_transport_handler_panics_total",
		Help: "Panics recovered in the admission handler (each one is a bug).",
	})
	buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "oci_transport_build_info",
		Help: "Always 1; the labels say which build of the webhook runs.",
	}, []string{"version", "goversion"})
)

func init() {
	metrics.Registry.MustRegister(admissions, admissionSeconds, resolutionSeconds, verdicts, panics, buildInfo)
}

// SetBuildInfo publishes the running build (once, at startup).
func SetBuildInfo(version string) {
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// resolverLabels are the values the resolver label may take: Tekton's own
// resolvers and "name" (a plain reference). Anything else is whatever a
// user wrote in a run and becomes "other", so the label's cardinality stays
// bounded whatever runs are submitted.
var resolverLabels = map[string]bool{"name": true, "bundles": true, "cluster": true, "git": true, "hub": true, "http": true}

// ResolverLabel is the resolver label value for a reference's resolver.
func ResolverLabel(resolver string) string {
	if resolverLabels[resolver] {
		return resolver
	}
	return "other"
}

// ObserveResolution records one resolved reference; the resolver calls it.
func ObserveResolution(resolver string, seconds float64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	resolutionSeconds.WithLabelValues(ResolverLabel(resolver), result).Observe(seconds)
}

// reasonLabels are the values the reason label may take besides none and
// other: the reasons a run is left unchanged (transform's, resolution's and
// the webhook's own).
var reasonLabels = map[string]bool{
	string(transform.ReasonCustomTask): true, string(transform.ReasonPipelineInPipe): true,
	string(transform.ReasonMissingPipeline): true, string(transform.ReasonMissingTask): true,
	string(transform.ReasonReservedName): true, string(transform.ReasonInvalidPipeline): true,
	string(transform.ReasonUnsupportedShape): true, string(transform.ReasonNameCollision): true,
	string(transform.ReasonInvalidReference): true, string(transform.ReasonClaimReferenced): true,
	string(transform.ReasonParamScope): true, string(transform.ReasonResultsBudget): true,
	string(resolution.ReasonTimeout): true, string(resolution.ReasonFailed): true,
	string(resolution.ReasonNotFound): true, string(resolution.ReasonUnsupported): true,
	ReasonVerificationPolicy: true, ReasonInvalidPipelineRun: true,
}

// ReasonLabel is the reason label value for a reason a run is left
// unchanged: a known reason as it is, anything else (a skipped-reason a
// user wrote on a copied run) "other", so the label stays bounded.
func ReasonLabel(reason string) string {
	if reasonLabels[reason] {
		return reason
	}
	return reasonOther
}
