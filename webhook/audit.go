package webhook

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/rawpatch"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Mode is what the handler does with an opted-in run.
type Mode string

const (
	// ModeConvert (the default) converts what it can and leaves the rest
	// unchanged with a reason.
	ModeConvert Mode = "convert"
	// ModeAudit evaluates every opted-in run exactly as ModeConvert would,
	// and admits it unchanged but for the audit annotations that record
	// what convert would have done.
	ModeAudit Mode = "audit"
)

// The values of the opt-in label (on a run or its namespace).
const (
	OptInConvert = "true"
	OptInAudit   = "audit"
	OptOut       = "false"
)

// The annotations an audit records on a run it admits unchanged. None of
// them is read by the conversion: a run audited earlier (a copy, a rerun)
// and admitted in convert mode is converted as any other, and these are
// removed from it.
const (
	// AnnotationAudit is the would-be verdict: AuditWouldConvert or
	// AuditWouldLeaveUnchanged.
	AnnotationAudit = transform.Domain + "/audit"
	// AnnotationAuditReason is "<Reason>: <message>" of a run convert would
	// leave unchanged (as its skipped-reason would say), bounded.
	AnnotationAuditReason = transform.Domain + "/audit-reason"
	// AnnotationAuditWorkspaces lists the workspaces convert would move to
	// emptyDir and the registry, comma-separated, bounded.
	AnnotationAuditWorkspaces = transform.Domain + "/audit-workspaces"
	// AnnotationAuditTasks is, as JSON, what each task would pull and push
	// (transform.TaskReport, the shape of a converted run's
	// oci-transport.tekton.dev/tasks), the first tasks within maxAuditTasks
	// bytes.
	AnnotationAuditTasks = transform.Domain + "/audit-tasks"
	// AnnotationAuditTasksOmitted counts the tasks left out of
	// AnnotationAuditTasks to keep it bounded (absent when none were).
	AnnotationAuditTasksOmitted = transform.Domain + "/audit-tasks-omitted"
)

// The values of AnnotationAudit (and of `webhook report`'s verdicts).
const (
	AuditWouldConvert        = "would-convert"
	AuditWouldLeaveUnchanged = "would-leave-unchanged"
)

// auditAnnotations are every annotation an audit writes.
var auditAnnotations = []string{AnnotationAudit, AnnotationAuditReason, AnnotationAuditWorkspaces, AnnotationAuditTasks, AnnotationAuditTasksOmitted}

const (
	// maxAuditTasks bounds AnnotationAuditTasks: a pipeline of a hundred
	// tasks must not take a large share of the object's 256 KiB of
	// annotations for an audit.
	maxAuditTasks = 4096
	// maxAuditWorkspaces bounds AnnotationAuditWorkspaces.
	maxAuditWorkspaces = 512
)

// ParseMode reads a --mode value.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeConvert, ModeAudit:
		return Mode(s), nil
	}
	return "", fmt.Errorf("mode must be %s or %s, not %q", ModeConvert, ModeAudit, s)
}

// auditRecord is the would-be outcome an audit records.
type auditRecord struct {
	verdict string // AuditWouldConvert or AuditWouldLeaveUnchanged
	// reason is the Reason alone (the metrics label), text the whole
	// "<Reason>: <message>".
	reason, text string
	workspaces   []string
	tasks        []transform.TaskReport
	omitted      int
}

func wouldLeave(reason, message string) auditRecord {
	return auditRecord{verdict: AuditWouldLeaveUnchanged, reason: reason, text: transform.SkippedReason(reason, message)}
}

func wouldConvert(r transform.Report) auditRecord {
	return auditRecord{verdict: AuditWouldConvert, workspaces: r.Workspaces, tasks: r.Tasks}
}

// annotations are the record's annotations, each bounded.
func (r auditRecord) annotations() map[string]string {
	a := map[string]string{AnnotationAudit: r.verdict}
	if r.verdict == AuditWouldLeaveUnchanged {
		a[AnnotationAuditReason] = r.text
		return a
	}
	a[AnnotationAuditWorkspaces] = truncate(strings.Join(r.workspaces, ","), maxAuditWorkspaces)
	tasks, omitted := boundedTasks(r.tasks, maxAuditTasks)
	a[AnnotationAuditTasks] = tasks
	if omitted > 0 {
		a[AnnotationAuditTasksOmitted] = strconv.Itoa(omitted)
	}
	return a
}

// boundedTasks is the JSON of the first tasks that fit in max bytes, and how
// many were left out.
func boundedTasks(tasks []transform.TaskReport, max int) (string, int) {
	if tasks == nil {
		tasks = []transform.TaskReport{}
	}
	for n := len(tasks); n >= 0; n-- {
		data, err := json.Marshal(tasks[:n])
		if err == nil && len(data) <= max {
			return string(data), len(tasks) - n
		}
	}
	return "[]", len(tasks)
}

// recordedAudit reads the record an earlier audit left on a run: a
// reinvocation (another webhook changed the run after us), or a copy of an
// audited run.
func recordedAudit(annotations map[string]string) (auditRecord, bool) {
	verdict, ok := annotations[AnnotationAudit]
	if !ok || (verdict != AuditWouldConvert && verdict != AuditWouldLeaveUnchanged) {
		return auditRecord{}, false
	}
	r := auditRecord{verdict: verdict, text: annotations[AnnotationAuditReason]}
	r.reason, _, _ = strings.Cut(r.text, ":")
	if ws := annotations[AnnotationAuditWorkspaces]; ws != "" {
		r.workspaces = strings.Split(ws, ",")
	}
	_ = json.Unmarshal([]byte(annotations[AnnotationAuditTasks]), &r.tasks)
	r.omitted, _ = strconv.Atoi(annotations[AnnotationAuditTasksOmitted])
	return r, true
}

// warning says what convert mode would have done, in one line.
func (r auditRecord) warning(strict bool) string {
	if r.verdict == AuditWouldLeaveUnchanged {
		deny := ""
		if strict {
			deny = " (--strict would deny it)"
		}
		return "audit: convert mode would leave this run unchanged" + deny + ": " + r.text
	}
	parts := make([]string, 0, len(r.tasks))
	for _, t := range r.tasks {
		var does []string
		if len(t.PullsFrom) > 0 {
			does = append(does, "pulls from "+strings.Join(t.PullsFrom, ","))
		}
		if t.Pushes {
			does = append(does, "pushes")
		}
		if len(does) == 0 {
			does = append(does, "pulls nothing")
		}
		parts = append(parts, t.Name+" "+strings.Join(does, ", "))
	}
	if r.omitted > 0 {
		parts = append(parts, fmt.Sprintf("%d more", r.omitted))
	}
	ws := "workspace "
	if len(r.workspaces) > 1 {
		ws = "workspaces "
	}
	return fmt.Sprintf("audit: convert mode would convert this run: %s%s would become emptyDir; %s (admitted unchanged; see the %s annotations)",
		ws, strings.Join(r.workspaces, ", "), strings.Join(parts, "; "), AnnotationAudit+"*")
}

// auditAnswer admits the run unchanged but for the record's annotations
// (replacing any stale ones), with the record's warning first.
func (h *Handler) auditAnswer(raw []byte, meta metav1.ObjectMeta, r auditRecord, warnings []string) admission.Response {
	all := append([]string{r.warning(h.Strict)}, auditPrefixed(warnings)...)
	after := meta.DeepCopy()
	after.Annotations = WithoutAuditAnnotations(after.Annotations)
	if after.Annotations == nil {
		after.Annotations = map[string]string{}
	}
	maps.Copy(after.Annotations, r.annotations())
	ops, err := rawpatch.Patch(raw, metadataOnly{meta}, metadataOnly{*after})
	if err != nil {
		return withWarnings(admission.Allowed(""), all)
	}
	return patched(ops, all)
}

// auditPrefixed marks the conversion's own warnings as what a conversion
// would say.
func auditPrefixed(warnings []string) []string {
	out := make([]string, len(warnings))
	for i, w := range warnings {
		out[i] = "audit: once converted: " + w
	}
	return out
}

// WithoutAuditAnnotations is annotations without the audit's (a clone when
// it had any): what convert mode stores on a run it converts or leaves
// unchanged, whatever an earlier audit recorded on the run it copies.
func WithoutAuditAnnotations(annotations map[string]string) map[string]string {
	if !hasAudit(annotations) {
		return annotations
	}
	out := maps.Clone(annotations)
	for _, k := range auditAnnotations {
		delete(out, k)
	}
	return out
}

func hasAudit(annotations map[string]string) bool {
	for _, k := range auditAnnotations {
		if _, ok := annotations[k]; ok {
			return true
		}
	}
	return false
}
