package main

import (
	"bytes"
	"encoding/json"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/golden"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func report(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"report"}, args...), strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func reportJSON(t *testing.T, args ...string) Report {
	t.Helper()
	code, out, errOut := report(t, "", append(args, "-o", "json")...)
	require.Equal(t, 0, code, errOut)
	var r Report
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	return r
}

func item(t *testing.T, r Report, kind, namespace, name string) ReportItem {
	t.Helper()
	for _, it := range r.Items {
		if it.Kind == kind && it.Namespace == namespace && it.Name == name {
			return it
		}
	}
	t.Fatalf("no %s %s/%s in the report", kind, namespace, name)
	return ReportItem{}
}

const (
	dump      = "testdata/report/dump.yaml"
	pipelines = "testdata/report/pipeline.yaml"
)

// The table and the JSON of a dump of two namespaces (runs finished and
// running, their PVCs, a TriggerTemplate) with the Pipeline and Task they
// reference, as golden files.
func TestReportFromFilesGolden(t *testing.T) {
	code, out, errOut := report(t, "", "-f", dump, "-f", pipelines)
	require.Equal(t, 0, code, errOut)
	golden.Check(t, "testdata/report/want.txt", []byte(out), "go test ./cmd/webhook -update")
	code, out, errOut = report(t, "", "-f", dump, "-f", pipelines, "-o", "json")
	require.Equal(t, 0, code, errOut)
	golden.Check(t, "testdata/report/want.json", []byte(out), "go test ./cmd/webhook -update")
}

func TestReportFromFiles(t *testing.T) {
	for name, tc := range map[string]struct {
		args  []string
		check func(t *testing.T, r Report)
	}{
		"the runs, their PVCs and the template": {
			args: []string{"-f", dump, "-f", pipelines},
			check: func(t *testing.T, r Report) {
				require.Len(t, r.Items, 6)
				b1 := item(t, r, "PipelineRun", "team-a", "build-1")
				require.Equal(t, verdictWouldConvert, b1.Verdict)
				require.Equal(t, "audit", b1.OptIn, "the namespace's label")
				require.True(t, b1.Finished)
				require.Equal(t, "8Gi", b1.PVCs[0].Size.Quantity, "a bound claim's capacity")
				require.Equal(t, []string{"build"}, b1.Tasks[1].PullsFrom)
				b3 := item(t, r, "PipelineRun", "team-a", "build-3")
				require.Equal(t, verdictWouldConvert, b3.Verdict, "evaluated again, whatever the admission recorded")
				require.Equal(t, "would-leave-unchanged", b3.Recorded["oci-transport.tekton.dev/audit"])
				a1 := item(t, r, "PipelineRun", "team-b", "approve-1")
				require.Equal(t, verdictWouldLeave, a1.Verdict)
				require.Equal(t, "CustomTaskBindsWorkspace", a1.Reason)
				require.Equal(t, "no", a1.OptIn)
				require.Equal(t, "10Gi", a1.PVCs[0].Size.Quantity, "a pending claim's request")
				rel := item(t, r, "PipelineRun", "team-b", "release-*")
				require.Equal(t, verdictNeedsRemote, rel.Verdict, "a git reference no file answers")
				tt := item(t, r, "TriggerTemplate", "team-a", "build-on-push")
				require.Equal(t, verdictWouldConvert, tt.Verdict)
				require.Equal(t, "20Gi", tt.Requested.Quantity, "the param's default")
				require.Equal(t, []string{"revision"}, tt.UnsetTemplateParams)
				require.Equal(t, 0, tt.Template.Index)

				s := r.Summary
				require.Equal(t, 7, s.PipelineRuns)
				require.Equal(t, 5, s.PipelineRunsWithTemplate)
				require.Equal(t, 1, s.ConvertedAtAdmission)
				require.Equal(t, 1, s.TriggerTemplates)
				require.Equal(t, 1, s.TriggerTemplateRuns)
				require.Equal(t, Tally{Count: 4, Storage: Storage{Quantity: "35Gi", Bytes: 35 << 30}}, s.Verdicts[verdictWouldConvert])
				require.Equal(t, "75Gi", s.Requested.Quantity, "5+5+5+10+50")
				require.Equal(t, "15Gi", s.WouldStopRequesting.Quantity, "the three build runs")
				require.Equal(t, "20Gi", s.PerTriggeredRun.Quantity)
				require.Equal(t, Tally{Count: 2, Storage: Storage{Quantity: "18Gi", Bytes: 18 << 30}}, s.HeldByFinished, "build-1's 8Gi and approve-1's 10Gi; build-2 runs, data has no run")
				require.Equal(t, Tally{Count: 1, Storage: Storage{Quantity: "8Gi", Bytes: 8 << 30}}, s.HeldByFinishedWouldConvert)

				require.Len(t, r.Pipelines, 2)
				p := r.Pipelines[1]
				require.Equal(t, "team-a/build-and-test", p.Key)
				require.True(t, p.Resolved)
				require.Equal(t, []DeclaredWorkspace{{Name: "shared"}, {Name: "cache", Optional: true}}, p.Declared)
				require.Equal(t, []string{"shared"}, p.BoundToVolumeClaimTemplate)
				require.Len(t, p.ReferencedBy, 4)
			},
		},
		"without the Pipeline every reference by name is missing": {
			args: []string{"-f", dump},
			check: func(t *testing.T, r Report) {
				require.Equal(t, 5, r.Summary.Verdicts[verdictWouldLeave].Count)
				require.Equal(t, 4, r.Summary.Reasons["ReferenceNotFound"].Count)
				require.Equal(t, "0", r.Summary.WouldStopRequesting.Quantity)
				require.False(t, r.Pipelines[1].Resolved)
			},
		},
		"the shipped release example: git, hub and bundles references from files": {
			args: exampleArgs(),
			check: func(t *testing.T, r Report) {
				rel := item(t, r, "PipelineRun", "default", "release-*")
				require.Equal(t, verdictWouldConvert, rel.Verdict)
				require.Len(t, rel.Tasks, 8)
				require.Equal(t, "50Gi", rel.Requested.Quantity)
				require.Empty(t, rel.Status, "an authored run has no status")
			},
		},
		"--no-remote: the release example needs remote resolution": {
			args: append(exampleArgs(), "--no-remote"),
			check: func(t *testing.T, r Report) {
				rel := item(t, r, "PipelineRun", "default", "release-*")
				require.Equal(t, verdictNeedsRemote, rel.Verdict)
				require.Contains(t, rel.Message, "--no-remote")
				require.Equal(t, "0", r.Summary.WouldStopRequesting.Quantity)
			},
		},
		"--namespace places objects without one": {
			args: append(exampleArgs(), "-n", "release"),
			check: func(t *testing.T, r Report) {
				item(t, r, "PipelineRun", "release", "release-*")
			},
		},
		"--results-budget=unchanged is the webhook's": {
			args: append(exampleArgs(), "--results-budget=unchanged"),
			check: func(t *testing.T, r Report) {
				rel := item(t, r, "PipelineRun", "default", "release-*")
				require.Equal(t, verdictWouldLeave, rel.Verdict)
				require.Equal(t, "ResultsBudgetReduced", rel.Reason)
			},
		},
		"opt-in from the run's label, whatever its namespace": {
			args: []string{"-f", "testdata/report/opted.yaml"},
			check: func(t *testing.T, r Report) {
				require.Equal(t, "opted-out", item(t, r, "PipelineRun", "team-a", "out").OptIn)
				require.Equal(t, "convert", item(t, r, "PipelineRun", "team-a", "in").OptIn)
				require.Equal(t, "audit", item(t, r, "PipelineRun", "team-a", "audited").OptIn)
				require.Equal(t, "unknown", item(t, r, "PipelineRun", "team-a", "unlabelled").OptIn, "no Namespace document")
				require.Equal(t, verdictWouldConvert, item(t, r, "PipelineRun", "team-a", "out").Verdict, "evaluated all the same")
				require.Equal(t, []string{"skipped documents of other kinds: v1 ConfigMap (1)"}, r.Notes[:1])
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			tc.check(t, reportJSON(t, tc.args...))
		})
	}
}

func TestReportReadsStdinAndNothingToReport(t *testing.T) {
	run, err := os.ReadFile("../../transform/testdata/nothing-to-convert/input.yaml")
	require.NoError(t, err)
	code, out, errOut := report(t, string(run), "-f", "-")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "No PipelineRun or TriggerTemplate binds a volumeClaimTemplate.")
	require.Contains(t, out, "PipelineRuns read: 1 (0 bind a volumeClaimTemplate")
}

func TestReportBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: tekton.dev/v1\nkind: PipelineRun\nspec: {workspaces: 3}\n"), 0o644))
	for _, args := range [][]string{
		{"-f", filepath.Join(dir, "missing.yaml")},
		{"-f", bad},
		{"--kubeconfig", filepath.Join(dir, "missing-kubeconfig")},
	} {
		code, _, errOut := report(t, "", args...)
		require.Equal(t, exitBadInput, code, "%v: %s", args, errOut)
		require.NotEmpty(t, errOut)
	}
}

// Unknown flags, arguments, formats and contradictions are usage errors
// (exit 2) that never reach a cluster.
func TestReportUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"extra"},
		{"-f", dump, "extra"},
		{"-o", "yaml"},
		{"-A", "-n", "team-a"},
		{"-f", dump, "-A"},
		{"-f", dump, "--kubeconfig", "x"},
		{"-f", dump, "-n", "a,b"},
		{"--concurrency=0"},
		{"--resolution-timeout=1m"},
		{"--registry="},
		{"--results-budget=deny"},
	} {
		code, out, errOut := report(t, "", args...)
		require.Equal(t, exitUsage, code, "%v: %s", args, errOut)
		require.Empty(t, out)
		require.NotEmpty(t, errOut)
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitUsage, run([]string{"reports"}, strings.NewReader(""), &stdout, &stderr), "an unknown subcommand")
	require.Contains(t, stderr.String(), "report")
}

// A scan longer than the progress interval says how far it is on stderr.
func TestReportProgress(t *testing.T) {
	defer func(d time.Duration) { progressInterval = d }(progressInterval)
	progressInterval = 0
	code, out, errOut := report(t, "", "-f", dump, "-f", pipelines, "--concurrency=1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "report: 1/6 runs evaluated (0s)\n")
	require.Contains(t, errOut, "report: 6/6 runs evaluated")
	require.Contains(t, errOut, "report: 6 runs evaluated in ")
	require.NotContains(t, out, "evaluated", "progress goes to stderr only")
}
