package webhook

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
)

// A pipeline of 300 tasks with long names keeps its audit annotations
// bounded: the first tasks that fit, and how many were left out.
func TestAuditAnnotationsAreBounded(t *testing.T) {
	var r transform.Report
	for i := range 300 {
		name := fmt.Sprintf("task-%03d-%s", i, strings.Repeat("x", 40))
		r.Tasks = append(r.Tasks, transform.TaskReport{Name: name, Workspaces: []string{"ws"}, PullsFrom: []string{"a", "b"}, Pushes: true})
		r.Workspaces = append(r.Workspaces, name)
	}
	a := wouldConvert(r).annotations()
	total := 0
	for k, v := range a {
		total += len(k) + len(v)
	}
	require.Less(t, total, 6*1024)
	require.LessOrEqual(t, len(a[AnnotationAuditTasks]), maxAuditTasks)
	var kept []transform.TaskReport
	require.NoError(t, json.Unmarshal([]byte(a[AnnotationAuditTasks]), &kept))
	omitted, err := strconv.Atoi(a[AnnotationAuditTasksOmitted])
	require.NoError(t, err)
	require.Equal(t, 300, len(kept)+omitted)
	require.NotEmpty(t, kept)

	back, ok := recordedAudit(a)
	require.True(t, ok)
	require.Equal(t, omitted, back.omitted)
	require.Contains(t, back.warning(false), fmt.Sprintf("%d more", omitted))

	long := wouldLeave("TaskSpecMissing", strings.Repeat("m", 10_000)).annotations()
	require.LessOrEqual(t, len([]rune(long[AnnotationAuditReason])), 1024)
	require.Len(t, long, 2)

	small := wouldConvert(transform.Report{Workspaces: []string{"ws"}, Tasks: r.Tasks[:2]}).annotations()
	require.NotContains(t, small, AnnotationAuditTasksOmitted)
}

// Only a known verdict is a record: anything else under the key is
// evaluated again.
func TestRecordedAudit(t *testing.T) {
	_, ok := recordedAudit(map[string]string{AnnotationAudit: "maybe"})
	require.False(t, ok)
	r, ok := recordedAudit(map[string]string{AnnotationAudit: AuditWouldLeaveUnchanged, AnnotationAuditReason: "TaskSpecMissing: gone"})
	require.True(t, ok)
	require.Equal(t, "TaskSpecMissing", r.reason)
	require.Equal(t, "audit: convert mode would leave this run unchanged (--strict would deny it): TaskSpecMissing: gone", r.warning(true))
}
