package webhook

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
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
)

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
	metrics.Registry.MustRegister(admissions, admissionSeconds, resolutionSeconds, panics, buildInfo)
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
