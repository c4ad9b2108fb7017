package transform

// What the webhook and the offline convert decide from a run's own metadata,
// and the annotation they write on a run they leave unchanged, in one place
// so both give the same object.

// maxSkippedReason bounds the skipped-reason annotation.
const maxSkippedReason = 1024

// OptedOut reports whether the run's own label key opts it out ("false"),
// which wins over its namespace's label.
func OptedOut(labels map[string]string, key string) bool {
	return labels[key] == "false"
}

// SkippedEarlier returns the reason an earlier admission recorded on a run
// it left unchanged (a reinvocation, or a copy of such a run): the answer
// stays the same without resolving again.
func SkippedEarlier(annotations map[string]string) (string, bool) {
	reason, ok := annotations[AnnotationSkippedReason]
	return reason, ok
}

// SkippedReason is the value of AnnotationSkippedReason for a run left
// unchanged: "<reason>: <message>", bounded.
func SkippedReason(reason, message string) string {
	text := reason
	if message != "" {
		text += ": " + message
	}
	if r := []rune(text); len(r) > maxSkippedReason {
		return string(r[:maxSkippedReason-1]) + "…"
	}
	return text
}
