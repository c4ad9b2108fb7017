// Package webhook is the admission adapter over transform: it decides whether
// a PipelineRun opted in, resolves what the run references, calls
// transform.PipelineRun, and answers with a JSON patch against the raw request
// object, admission warnings, or (strict mode) a denial.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/rawpatch"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// NamespaceGVK is what CachedNamespaces reads.
var NamespaceGVK = corev1.SchemeGroupVersion.WithKind("Namespace")

// Resolver finds the specs a run references (resolve.Resolver in production).
type Resolver interface {
	Resolve(ctx context.Context, run *v1.PipelineRun, dryRun bool) (transform.Resolved, error)
}

// Handler answers PipelineRun admission requests.
type Handler struct {
	// LabelKey opts runs and namespaces in (transform.EnabledLabel if empty).
	LabelKey string
	// Strict denies a run that opted in but cannot be converted, instead of
	// admitting it unchanged.
	Strict bool
	// Options are passed to transform.PipelineRun.
	Options    transform.Options
	Resolver   Resolver
	Namespaces NamespaceLabels
	// Policies, when set, leaves a run unchanged whose conversion would
	// inline a reference in a namespace with a VerificationPolicy.
	Policies VerificationPolicies
	Log      logr.Logger
}

var _ admission.Handler = (*Handler)(nil)

const (
	// warningPrefix starts every warning so a user knows who is talking.
	warningPrefix = "oci-transport: "
	// maxWarning keeps each warning well inside the API server's 4 KiB
	// budget for all warnings of a response.
	maxWarning = 512
)

func (h *Handler) labelKey() string {
	if h.LabelKey != "" {
		return h.LabelKey
	}
	return transform.EnabledLabel
}

// Handle never returns a 5xx for bad input: an object it cannot read is
// admitted as it is (or denied in strict mode), and a panic is recovered,
// counted and answered like a run that cannot be converted.
func (h *Handler) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	start := time.Now()
	log := h.Log.WithValues("namespace", req.Namespace, "name", req.Name, "uid", string(req.UID))
	outcome := OutcomeInternalFail
	defer func() {
		if p := recover(); p != nil {
			panics.Inc()
			outcome = OutcomePanic
			log.Error(fmt.Errorf("panic: %v", p), "admission handler panicked", "stack", string(debug.Stack()))
			resp = h.failOpen(fmt.Sprintf("internal error: %v", p))
		}
		admissions.WithLabelValues(outcome).Inc()
		admissionSeconds.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
		log.V(1).Info("admission answered", "outcome", outcome, "allowed", resp.Allowed, "patchOps", len(resp.Patches), "took", time.Since(start).String())
	}()
	resp, outcome = h.handle(ctx, &log, req)
	return resp
}

func (h *Handler) handle(ctx context.Context, log *logr.Logger, req admission.Request) (admission.Response, string) {
	if req.Operation != admissionv1.Create || req.SubResource != "" ||
		req.Resource.Group != "tekton.dev" || req.Resource.Resource != "pipelineruns" {
		return admission.Allowed(""), OutcomeIgnored
	}
	version := req.Kind.Version
	if version != "v1" && version != "v1beta1" {
		return admission.Allowed(""), OutcomeIgnored
	}
	raw := req.Object.Raw
	dryRun := req.DryRun != nil && *req.DryRun

	// One full decode; only when the spec does not decode is the metadata
	// read on its own, so the opt-in decision never depends on the spec.
	run, decodeErr := decodeRun(version, raw)
	var meta metav1.ObjectMeta
	if decodeErr == nil {
		meta = run.ObjectMeta
	} else {
		var head struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return h.invalid(fmt.Errorf("the object is not a Kubernetes object: %w", err)), OutcomeInvalid
		}
		meta = head.Metadata
	}
	if req.Name == "" {
		*log = log.WithValues("generateName", meta.GenerateName)
	}
	in, err := h.optedIn(ctx, req.Namespace, meta.Labels)
	if err != nil {
		log.Error(err, "cannot decide opt-in; admitting unchanged")
		return h.failOpen("cannot read the namespace's opt-in label: " + err.Error()), OutcomeInternalFail
	}
	if !in {
		return admission.Allowed("not opted in"), OutcomeNotOptedIn
	}
	if _, ok := meta.Annotations[transform.AnnotationConverted]; ok {
		return admission.Allowed("already converted"), OutcomeAlready
	}
	if reason, ok := transform.SkippedEarlier(meta.Annotations); ok {
		// Our own earlier answer (a reinvocation, or a copy of a skipped run):
		// resolving again could take a second deadline for the same result.
		return withWarnings(admission.Allowed("left unchanged earlier"), []string{"run left unchanged: " + reason}), OutcomeUnchanged
	}
	if decodeErr != nil {
		return h.skip(raw, meta, "InvalidPipelineRun", decodeErr.Error(), nil), h.skipOutcome("InvalidPipelineRun")
	}
	if !bindsVolumeClaimTemplate(run) {
		return admission.Allowed("no volumeClaimTemplate workspace"), OutcomeNothing
	}

	blocked, err := h.verificationPolicyBlocks(ctx, run, req.Namespace)
	if err != nil {
		// Not knowing whether verification applies must not bypass it.
		log.Error(err, "cannot decide whether a VerificationPolicy applies; admitting unchanged")
		return h.failOpen("cannot read the namespace's VerificationPolicies: " + err.Error()), OutcomeInternalFail
	}
	if blocked != "" {
		log.Info("run left unchanged", "reason", ReasonVerificationPolicy)
		return h.skip(raw, meta, ReasonVerificationPolicy, blocked, nil), h.skipOutcome(ReasonVerificationPolicy)
	}

	var resolved transform.Resolved
	if h.Resolver != nil { // nil: inline specs only (transform reports what is missing)
		resolved, err = h.Resolver.Resolve(ctx, run, dryRun)
	}
	if err != nil {
		reason, message, ok := resolution.Describe(err)
		if !ok {
			reason, message = resolution.ReasonFailed, err.Error()
		}
		log.Info("resolution failed; run left unchanged", "reason", reason, "error", err.Error())
		return h.skip(raw, meta, string(reason), message, nil), h.skipOutcome(string(reason))
	}

	out, report, err := transform.PipelineRun(run, resolved, h.Options)
	if err != nil {
		log.Error(err, "conversion failed; admitting unchanged")
		return h.failOpen("conversion failed: " + err.Error()), OutcomeInternalFail
	}
	switch report.Outcome {
	case transform.Converted:
		ops, err := patchRun(raw, version, run, out)
		if err != nil {
			log.Error(err, "computing the patch failed; admitting unchanged")
			return h.failOpen("computing the patch failed: " + err.Error()), OutcomeInternalFail
		}
		log.Info("converted", "workspaces", report.Workspaces, "tasks", len(report.Tasks))
		return patched(ops, report.Warnings), OutcomeConverted
	case transform.NothingToConvert:
		return withWarnings(admission.Allowed("nothing to convert"), report.Warnings), OutcomeNothing
	case transform.AlreadyConverted:
		return admission.Allowed("already converted"), OutcomeAlready
	default:
		log.Info("run cannot be converted; left unchanged", "reason", report.Reason, "message", report.Message)
		return h.skip(raw, meta, string(report.Reason), report.Message, report.Warnings), h.skipOutcome(string(report.Reason))
	}
}

func (h *Handler) skipOutcome(reason string) string {
	if h.denies(reason) {
		return OutcomeDenied
	}
	return OutcomeUnchanged
}

// denies says whether strict mode denies a run skipped for reason. A dry run
// that only lacks remote resolution is not denied: the real create may well
// be converted.
func (h *Handler) denies(reason string) bool {
	return h.Strict && reason != string(resolve.ReasonDryRun)
}

// skip answers for a run that opted in but is not converted: admitted as it
// is with a warning and a patch that only adds the skipped-reason annotation,
// or denied in strict mode.
func (h *Handler) skip(raw []byte, meta metav1.ObjectMeta, reason, message string, warnings []string) admission.Response {
	text := transform.SkippedReason(reason, message)
	if h.denies(reason) {
		return withWarnings(admission.Denied(warningPrefix+"the run opted in but cannot be converted: "+text), warnings)
	}
	warnings = append([]string{"run left unchanged (it keeps its PVC): " + text}, warnings...)
	if reason == string(resolve.ReasonDryRun) {
		// Not a verdict on the run (the real create may convert), so no
		// annotation: `kubectl diff` (a dry run) shows no spurious change.
		return withWarnings(admission.Allowed(""), warnings)
	}
	after := meta.DeepCopy()
	if after.Annotations == nil {
		after.Annotations = map[string]string{}
	}
	after.Annotations[transform.AnnotationSkippedReason] = text
	// Only metadata is compared, so every other field of raw is kept as is,
	// whatever its version.
	ops, err := rawpatch.Patch(raw, metadataOnly{meta}, metadataOnly{*after})
	if err != nil {
		return withWarnings(admission.Allowed(""), warnings)
	}
	return patched(ops, warnings)
}

type metadataOnly struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
}

// invalid answers for an object that cannot be read at all.
func (h *Handler) invalid(err error) admission.Response {
	if h.Strict {
		return admission.Denied(warningPrefix + err.Error())
	}
	return withWarnings(admission.Allowed(""), []string{"run left unchanged: " + err.Error()})
}

// failOpen answers for our own failures: the run is admitted as it is (it
// works on its PVC), or denied in strict mode. Never a 5xx: with
// failurePolicy Fail that would block every run for a bug of ours.
func (h *Handler) failOpen(msg string) admission.Response {
	if h.Strict {
		return admission.Denied(warningPrefix + msg)
	}
	return withWarnings(admission.Allowed(""), []string{"run left unchanged: " + msg})
}

func decodeRun(version string, raw []byte) (*v1.PipelineRun, error) {
	if version == "v1" {
		run := &v1.PipelineRun{}
		if err := json.Unmarshal(raw, run); err != nil {
			return nil, fmt.Errorf("decoding tekton.dev/v1 PipelineRun: %w", err)
		}
		return run, nil
	}
	obj, err := decode.Object(raw)
	if err != nil {
		return nil, err
	}
	run, ok := obj.(*v1.PipelineRun)
	if !ok {
		return nil, fmt.Errorf("expected a PipelineRun, got %T", obj)
	}
	return run, nil
}

// patchRun computes the patch in the version of raw: for v1beta1 both sides
// are converted back from v1, so conversion artefacts cancel out like the
// typed round trip's do.
func patchRun(raw []byte, version string, before, after *v1.PipelineRun) ([]jsonpatch.Operation, error) {
	if version == "v1" {
		return rawpatch.Patch(raw, before, after)
	}
	ctx := context.Background()
	b, a := &v1beta1.PipelineRun{}, &v1beta1.PipelineRun{}
	if err := b.ConvertFrom(ctx, before.DeepCopy()); err != nil {
		return nil, fmt.Errorf("converting the run back to v1beta1: %w", err)
	}
	if err := a.ConvertFrom(ctx, after.DeepCopy()); err != nil {
		return nil, fmt.Errorf("converting the converted run back to v1beta1: %w", err)
	}
	return rawpatch.Patch(raw, b, a)
}

func bindsVolumeClaimTemplate(run *v1.PipelineRun) bool {
	for _, w := range run.Spec.Workspaces {
		if w.VolumeClaimTemplate != nil {
			return true
		}
	}
	return false
}

func patched(ops []jsonpatch.Operation, warnings []string) admission.Response {
	resp := admission.Allowed("")
	if len(ops) > 0 {
		resp.Patches = ops
		pt := admissionv1.PatchTypeJSONPatch
		resp.PatchType = &pt
	}
	return withWarnings(resp, warnings)
}

func withWarnings(resp admission.Response, warnings []string) admission.Response {
	for _, w := range warnings {
		resp.Warnings = append(resp.Warnings, warningPrefix+truncate(printable(w), maxWarning))
	}
	return resp
}

// printable replaces what an HTTP Warning header cannot carry (the API server
// drops such a warning entirely).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
