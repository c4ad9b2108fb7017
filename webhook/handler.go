// Package webhook is the admission adapter over transform: it decides whether
// a PipelineRun opted in, resolves what the run references, calls
// transform.PipelineRun, and answers with a JSON patch against the raw request
// object, admission warnings, or (strict mode) a denial. In audit mode (or
// for a run whose opt-in label says "audit") it evaluates the run the same
// way and admits it unchanged but for annotations that record the would-be
// outcome.
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
	// admitting it unchanged. An audited run is never denied.
	Strict bool
	// Mode is ModeConvert (also when empty) or ModeAudit, which audits
	// every opted-in run. Whatever the mode, a run whose deciding opt-in
	// label is "audit" is audited.
	Mode Mode
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
	opt, err := h.optIn(ctx, req.Namespace, meta.Labels)
	if err != nil {
		log.Error(err, "cannot decide opt-in; admitting unchanged")
		return h.failOpen("cannot read the namespace's opt-in label: " + err.Error()), OutcomeInternalFail
	}
	if !opt.In() {
		return admission.Allowed("not opted in"), OutcomeNotOptedIn
	}
	if _, ok := meta.Annotations[transform.AnnotationConverted]; ok {
		return admission.Allowed("already converted"), OutcomeAlready
	}
	if h.Mode == ModeAudit || opt == OptInAudited {
		*log = log.WithValues("mode", string(ModeAudit))
		return h.audit(ctx, log, req, run, decodeErr, meta)
	}
	if reason, ok := transform.SkippedEarlier(meta.Annotations); ok {
		// Our own earlier answer (a reinvocation, or a copy of a skipped run):
		// resolving again could take a second deadline for the same result.
		return withWarnings(admission.Allowed("left unchanged earlier"), []string{"run left unchanged: " + reason}), OutcomeUnchanged
	}
	if decodeErr != nil {
		verdicts.WithLabelValues(string(ModeConvert), verdictUnchanged, ReasonLabel(ReasonInvalidPipelineRun)).Inc()
		return h.skip(raw, meta, ReasonInvalidPipelineRun, decodeErr.Error(), nil), h.skipOutcome(ReasonInvalidPipelineRun)
	}

	v := h.evaluate(ctx, log, run, req.Namespace, dryRun)
	switch {
	case v.Failure != "":
		return h.failOpen(v.Failure), OutcomeInternalFail
	case v.Outcome == transform.Converted:
		// A copy of a run audited earlier: the record of what would have
		// happened goes, what happened is in the conversion's annotations.
		out := *v.Converted
		out.Annotations = WithoutAuditAnnotations(out.Annotations)
		ops, err := patchRun(raw, version, run, &out)
		if err != nil {
			log.Error(err, "computing the patch failed; admitting unchanged")
			return h.failOpen("computing the patch failed: " + err.Error()), OutcomeInternalFail
		}
		verdicts.WithLabelValues(string(ModeConvert), verdictConvert, reasonNone).Inc()
		log.Info("converted", "workspaces", v.Report.Workspaces, "tasks", len(v.Report.Tasks))
		return patched(ops, v.Report.Warnings), OutcomeConverted
	case v.Outcome == transform.NothingToConvert:
		return withWarnings(admission.Allowed("nothing to convert"), v.Report.Warnings), OutcomeNothing
	case v.Outcome == transform.AlreadyConverted:
		return admission.Allowed("already converted"), OutcomeAlready
	default:
		if v.Reason != string(resolve.ReasonDryRun) {
			verdicts.WithLabelValues(string(ModeConvert), verdictUnchanged, ReasonLabel(v.Reason)).Inc()
		}
		return h.skip(raw, meta, v.Reason, v.Message, v.Report.Warnings), h.skipOutcome(v.Reason)
	}
}

// ReasonInvalidPipelineRun leaves a run unchanged whose spec does not decode.
const ReasonInvalidPipelineRun = "InvalidPipelineRun"

// Verdict is what the handler decides for an opted-in run that is not our
// own output, before it answers: convert mode answers with it, audit mode
// records it, `webhook report` prints it.
type Verdict struct {
	// Outcome is transform's: Converted, NothingToConvert (the run binds no
	// volumeClaimTemplate), AlreadyConverted, or Unchanged with Reason and
	// Message (a transform.Reason, a resolution reason, or
	// ReasonVerificationPolicy; resolve.ReasonDryRun when only remote
	// resolution, which dryRun forbids, could tell).
	Outcome         transform.Outcome
	Reason, Message string
	// Report is the conversion's report (its warnings also for Unchanged).
	Report transform.Report
	// Resolved is what resolution found, also when it failed part-way.
	Resolved transform.Resolved
	// Converted is the converted run (Outcome Converted).
	Converted *v1.PipelineRun
	// Failure is set when the handler itself failed (reading policies, an
	// invalid option): such a run is admitted unchanged, fail-open.
	Failure string
}

// Evaluate decides for run, created in namespace, what an admission does
// after the opt-in and the run's own annotations: the VerificationPolicy
// check, resolution through h.Resolver (dryRun forbids
// ResolutionRequests) and the conversion. The run's opt-in and its
// annotations are not looked at.
func (h *Handler) Evaluate(ctx context.Context, run *v1.PipelineRun, namespace string, dryRun bool) Verdict {
	log := h.Log.WithValues("namespace", namespace, "name", run.Name)
	return h.evaluate(ctx, &log, run, namespace, dryRun)
}

func (h *Handler) evaluate(ctx context.Context, log *logr.Logger, run *v1.PipelineRun, namespace string, dryRun bool) Verdict {
	if !bindsVolumeClaimTemplate(run) {
		return Verdict{Outcome: transform.NothingToConvert}
	}
	unchanged := func(reason, message string) Verdict {
		return Verdict{Outcome: transform.Unchanged, Reason: reason, Message: message}
	}

	blocked, err := h.verificationPolicyBlocks(ctx, run, namespace)
	if err != nil {
		// Not knowing whether verification applies must not bypass it.
		log.Error(err, "cannot decide whether a VerificationPolicy applies; admitting unchanged")
		return Verdict{Failure: "cannot read the namespace's VerificationPolicies: " + err.Error()}
	}
	if blocked != "" {
		log.Info("run left unchanged", "reason", ReasonVerificationPolicy)
		return unchanged(ReasonVerificationPolicy, blocked)
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
		v := unchanged(string(reason), message)
		v.Resolved = resolved
		return v
	}

	out, report, err := transform.PipelineRun(run, resolved, h.Options)
	if err != nil {
		log.Error(err, "conversion failed; admitting unchanged")
		return Verdict{Failure: "conversion failed: " + err.Error(), Resolved: resolved}
	}
	v := Verdict{Outcome: report.Outcome, Report: report, Resolved: resolved}
	switch report.Outcome {
	case transform.Converted:
		v.Converted = out
	case transform.Unchanged:
		log.Info("run cannot be converted; left unchanged", "reason", report.Reason, "message", report.Message)
		v.Reason, v.Message = string(report.Reason), report.Message
	}
	return v
}

// audit answers for a run audited instead of converted: it is evaluated as
// convert mode would (the same checks, resolution and conversion) and
// admitted unchanged but for the audit annotations, with a warning saying
// what convert mode would do. Never denied.
func (h *Handler) audit(ctx context.Context, log *logr.Logger, req admission.Request, run *v1.PipelineRun, decodeErr error, meta metav1.ObjectMeta) (admission.Response, string) {
	raw := req.Object.Raw
	if r, ok := recordedAudit(meta.Annotations); ok {
		// A reinvocation (another webhook changed the run after us; Tekton's
		// defaulting does) or a copy of an audited run: the recorded verdict
		// stands, as a skipped-reason does in convert mode, instead of a
		// second resolution per run.
		return withWarnings(admission.Allowed("audited earlier"), []string{r.warning(h.Strict)}), OutcomeAudited
	}
	var (
		rec      auditRecord
		warnings []string
	)
	if earlier, ok := transform.SkippedEarlier(meta.Annotations); ok {
		// Convert mode would answer from this annotation without resolving.
		rec = auditRecord{verdict: AuditWouldLeaveUnchanged, text: earlier}
		rec.reason, _, _ = strings.Cut(earlier, ":")
	} else if decodeErr != nil {
		rec = wouldLeave(ReasonInvalidPipelineRun, decodeErr.Error())
	} else {
		v := h.evaluate(ctx, log, run, req.Namespace, req.DryRun != nil && *req.DryRun)
		switch {
		case v.Failure != "":
			return withWarnings(admission.Allowed(""), []string{"audit: cannot tell what convert mode would do: " + v.Failure}), OutcomeInternalFail
		case v.Outcome == transform.NothingToConvert:
			return withWarnings(admission.Allowed("nothing to convert"), auditPrefixed(v.Report.Warnings)), OutcomeNothing
		case v.Outcome == transform.AlreadyConverted:
			return admission.Allowed("already converted"), OutcomeAlready
		case v.Outcome == transform.Unchanged && v.Reason == string(resolve.ReasonDryRun):
			// Not a verdict: the real create may convert. No annotation, as
			// in convert mode, so `kubectl diff` shows no spurious change.
			return withWarnings(admission.Allowed(""), []string{"audit: a dry run cannot tell what convert mode would do: " + transform.SkippedReason(v.Reason, v.Message)}), OutcomeAudited
		case v.Outcome == transform.Unchanged:
			rec, warnings = wouldLeave(v.Reason, v.Message), v.Report.Warnings
		default: // Converted
			// The patch convert mode would send must be computable too.
			if _, err := patchRun(raw, req.Kind.Version, run, v.Converted); err != nil {
				log.Error(err, "computing the patch failed")
				return withWarnings(admission.Allowed(""), []string{"audit: convert mode would fail to compute the patch and admit the run unchanged: " + err.Error()}), OutcomeInternalFail
			}
			rec, warnings = wouldConvert(v.Report), v.Report.Warnings
		}
	}
	label := reasonNone
	if rec.verdict == AuditWouldLeaveUnchanged {
		label = ReasonLabel(rec.reason)
	}
	verdicts.WithLabelValues(string(ModeAudit), verdictOf(rec.verdict), label).Inc()
	log.Info("audited: admitted unchanged", "wouldBe", rec.verdict, "reason", rec.reason, "workspaces", rec.workspaces, "tasks", len(rec.tasks))
	return h.auditAnswer(raw, meta, rec, warnings), OutcomeAudited
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
	return h.strict() && reason != string(resolve.ReasonDryRun)
}

// strict is Strict outside audit mode: audit mode never denies.
func (h *Handler) strict() bool {
	return h.Strict && h.Mode != ModeAudit
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
	after.Annotations = WithoutAuditAnnotations(after.Annotations)
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
	if h.strict() {
		return admission.Denied(warningPrefix + err.Error())
	}
	return withWarnings(admission.Allowed(""), []string{"run left unchanged: " + err.Error()})
}

// failOpen answers for our own failures: the run is admitted as it is (it
// works on its PVC), or denied in strict mode. Never a 5xx: with
// failurePolicy Fail that would block every run for a bug of ours.
func (h *Handler) failOpen(msg string) admission.Response {
	if h.strict() {
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
