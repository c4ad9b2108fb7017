package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// auditCase is one run to create twice, in a namespace labelled audit and in
// one labelled true, after the objects it needs (Pipelines, Tasks, a
// VerificationPolicy) in each.
type auditCase struct {
	name    string
	objects [][]byte // JSON, created first in both namespaces
	run     []byte   // JSON of the PipelineRun as submitted
	// want is the audit verdict expected (AnnotationAudit's value, "" for
	// none): it keeps the comparison with convert mode from passing on two
	// runs the webhook never saw.
	want string
}

// auditCases are the e2e fixture runs (with the objects their tests create
// first) and the transform golden cases that need no remote resolver.
func auditCases(t *testing.T) []auditCase {
	t.Helper()
	fixture := func(name, want, run string, objects ...string) auditCase {
		c := auditCase{name: name, want: want, run: fixtureJSON(t, "testdata/"+run)}
		for _, o := range objects {
			c.objects = append(c.objects, fixtureJSON(t, "testdata/"+o))
		}
		return c
	}
	cases := []auditCase{
		fixture("e2e/inline-run", webhook.AuditWouldConvert, "inline-run.yaml"),
		fixture("e2e/by-name-run", webhook.AuditWouldConvert, "by-name-run.yaml", "task-make.yaml", "pipeline-build.yaml"),
		fixture("e2e/release-run", webhook.AuditWouldConvert, "release-run.yaml", "task-publish.yaml"),
		fixture("e2e/v1beta1-run", webhook.AuditWouldConvert, "v1beta1-run.yaml"),
		fixture("e2e/custom-task-run", webhook.AuditWouldLeaveUnchanged, "custom-task-run.yaml"),
		fixture("e2e/slow-run", webhook.AuditWouldLeaveUnchanged, "slow-run.yaml"),
		fixture("e2e/verification-policy", webhook.AuditWouldLeaveUnchanged, "by-name-run.yaml", "task-make.yaml", "pipeline-build.yaml", "verification-policy.yaml"),
	}

	inputs, err := filepath.Glob("../../transform/testdata/*/input.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, input := range inputs {
		dir := filepath.Dir(input)
		data, err := os.ReadFile(input)
		require.NoError(t, err)
		if remoteRef.Match(data) {
			// Not self-contained: a remote reference that the suite's test
			// resolver does not answer (it would record an error that
			// TestResolverRefsConverted checks for).
			continue
		}
		docs := yamlDocs(t, input)
		var report struct {
			Outcome transform.Outcome `json:"outcome"`
		}
		data, err = os.ReadFile(filepath.Join(dir, "report.yaml"))
		require.NoError(t, err)
		require.NoError(t, yaml.Unmarshal(data, &report))
		want := map[transform.Outcome]string{
			transform.Converted: webhook.AuditWouldConvert,
			transform.Unchanged: webhook.AuditWouldLeaveUnchanged,
		}[report.Outcome]
		cases = append(cases, auditCase{name: "golden/" + filepath.Base(dir), run: docs[0], objects: docs[1:], want: want})
	}
	return cases
}

// remoteRef finds a reference through a remote resolver in a golden input.
var remoteRef = regexp.MustCompile(`(?m)^\s*resolver:`)

// TestAuditModeMatchesConvertMode creates every case's run in a namespace
// labelled audit, in one labelled true and in one not opted in (the
// control: what the API server stores without our webhook), through the real
// API server and the webhook. Audit mode must store the run exactly as the
// control does (and so as submitted, but where the API server itself prunes)
// but for the audit annotations; the annotations and the admission warning
// must say what convert mode did to the same run (its converted workspaces,
// its injected pull and push steps, or its skipped-reason), and the
// conversion's own warnings must be relayed.
func TestAuditModeMatchesConvertMode(t *testing.T) {
	need(t)
	for _, c := range auditCases(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			control := newEnv(t, nil)
			audit := newEnv(t, map[string]string{transform.EnabledLabel: webhook.OptInAudit})
			convert := newEnv(t, map[string]string{transform.EnabledLabel: webhook.OptInConvert})
			submitted, plain, controlWarnings := control.createCase(t, c)
			_, audited, auditWarnings := audit.createCase(t, c)
			_, converted, convertWarnings := convert.createCase(t, c)
			require.Empty(t, controlWarnings, "the webhook was not called for the control")

			requireStoredAsSubmitted(t, submitted, control.ns, plain, audited, audit.ns)
			ann := normalized(audited.GetAnnotations(), audit.ns)
			require.Equal(t, c.want, ann[webhook.AnnotationAudit], "audit verdict; warnings: %q", auditWarnings)
			compareWithConvert(t, submitted, ann, normalizedAll(auditWarnings, audit.ns),
				converted, normalized(converted.GetAnnotations(), convert.ns), normalizedAll(convertWarnings, convert.ns))
		})
	}
}

// createCase creates c's objects and then its run in e's namespace (the
// run's own opt-in label removed, so the namespace's decides) and returns
// the run as submitted, as stored (read back in the submitted version) and
// the webhook's warnings on its creation.
func (e *env) createCase(t *testing.T, c auditCase) (submitted map[string]any, stored *unstructured.Unstructured, warnings []string) {
	t.Helper()
	ctx := context.Background()
	for _, data := range c.objects {
		u := &unstructured.Unstructured{}
		require.NoError(t, u.UnmarshalJSON(data))
		u.SetNamespace(e.ns)
		require.NoError(t, e.c.Create(ctx, u), "creating %s %s", u.GetKind(), u.GetName())
	}
	if len(c.objects) > 0 {
		// The cluster resolver reads its own namespace's Tasks from the
		// webhook's informer (see TestResolverRefsConverted).
		time.Sleep(300 * time.Millisecond)
	}

	run := &unstructured.Unstructured{}
	require.NoError(t, run.UnmarshalJSON(c.run))
	run.SetNamespace(e.ns)
	if labels := run.GetLabels(); labels != nil {
		delete(labels, transform.EnabledLabel)
		if len(labels) == 0 {
			labels = nil
		}
		run.SetLabels(labels)
	}
	submitted = canonical(t, run.Object)
	e.warnings.reset()
	require.NoError(t, e.c.Create(ctx, run)) // run now holds the API server's answer
	warnings = e.warnings.ours()

	stored = &unstructured.Unstructured{}
	stored.SetGroupVersionKind(run.GroupVersionKind())
	require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(run), stored))
	return submitted, stored, warnings
}

// requireStoredAsSubmitted: the audited run is stored byte for byte (as
// canonical JSON) as the control run, apart from what the API server sets
// (uid, resourceVersion, creationTimestamp, generation, managedFields, a
// generated name), the namespace and the audit annotations; and the control
// as submitted, but for a v1beta1 submission, which envtest's API server
// itself stores without the fields that v1, the storage version, does not
// have (the CRD's conversion strategy is None without Tekton's webhook).
func requireStoredAsSubmitted(t *testing.T, submitted map[string]any, controlNS string, control *unstructured.Unstructured, audited *unstructured.Unstructured, auditNS string) {
	t.Helper()
	meta, _ := submitted["metadata"].(map[string]any)
	generated := meta["name"] == nil
	want := withoutServerFields(t, control.Object, controlNS, generated)
	for _, k := range auditAnnotationKeys {
		require.NotContains(t, control.GetAnnotations(), k)
	}
	got := withoutServerFields(t, audited.Object, auditNS, generated)
	require.Equal(t, string(mustJSON(t, want["spec"])), string(mustJSON(t, got["spec"])), "audit mode changed the spec")
	require.Equal(t, string(mustJSON(t, want)), string(mustJSON(t, got)), "audit mode changed more than its annotations")

	sub := withoutServerFields(t, submitted, controlNS, generated)
	if submitted["apiVersion"] == "tekton.dev/v1beta1" {
		if !bytes.Equal(mustJSON(t, sub), mustJSON(t, want)) {
			t.Logf("the API server itself stores this v1beta1 run differently from the submission:\nsubmitted %s\nstored    %s", mustJSON(t, sub["spec"]), mustJSON(t, want["spec"]))
		}
		return
	}
	require.Equal(t, string(mustJSON(t, sub)), string(mustJSON(t, want)), "the API server stores the submission as is")
}

// withoutServerFields is obj as canonical JSON without the fields the API
// server sets and the audit annotations, its namespace a placeholder.
func withoutServerFields(t *testing.T, obj map[string]any, ns string, generatedName bool) map[string]any {
	t.Helper()
	out := canonical(t, obj)
	meta, _ := out["metadata"].(map[string]any)
	require.NotNil(t, meta)
	for _, k := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"} {
		delete(meta, k)
	}
	if generatedName {
		delete(meta, "name")
	}
	require.Equal(t, ns, meta["namespace"])
	meta["namespace"] = "<namespace>"
	if ann, ok := meta["annotations"].(map[string]any); ok {
		for _, k := range auditAnnotationKeys {
			delete(ann, k)
		}
		if len(ann) == 0 {
			delete(meta, "annotations")
		}
	}
	return out
}

// normalized replaces the test namespace's name, which the webhook's
// messages may name, in every value.
func normalized(m map[string]string, ns string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = strings.ReplaceAll(v, ns, "<namespace>")
	}
	return out
}

func normalizedAll(list []string, ns string) []string {
	out := make([]string, len(list))
	for i, v := range list {
		out[i] = strings.ReplaceAll(v, ns, "<namespace>")
	}
	return out
}

var auditAnnotationKeys = []string{
	webhook.AnnotationAudit, webhook.AnnotationAuditReason, webhook.AnnotationAuditWorkspaces,
	webhook.AnnotationAuditTasks, webhook.AnnotationAuditTasksOmitted,
}

// compareWithConvert checks the audit's annotations and warnings against
// what convert mode did to the same run.
func compareWithConvert(t *testing.T, submitted map[string]any, ann map[string]string, auditWarnings []string, converted *unstructured.Unstructured, conv map[string]string, convertWarnings []string) {
	t.Helper()
	meta, _ := submitted["metadata"].(map[string]any)
	submittedAnn, _ := meta["annotations"].(map[string]any)
	_, wasConverted := submittedAnn[transform.AnnotationConverted]
	const (
		wouldConvert  = "oci-transport: audit: convert mode would convert this run: "
		wouldLeave    = "oci-transport: audit: convert mode would leave this run unchanged: "
		leftUnchanged = "oci-transport: run left unchanged (it keeps its PVC): "
	)
	switch {
	case conv[transform.AnnotationConverted] != "" && !wasConverted:
		require.Equal(t, webhook.AuditWouldConvert, ann[webhook.AnnotationAudit], "convert mode converted the run")
		require.Equal(t, conv[transform.AnnotationConverted], ann[webhook.AnnotationAuditWorkspaces], "workspaces")
		require.NotContains(t, ann, webhook.AnnotationAuditTasksOmitted)
		wantTasks := conv[transform.AnnotationTasks]
		if wantTasks == "" {
			wantTasks = "[]"
		}
		require.Equal(t, wantTasks, ann[webhook.AnnotationAuditTasks], "the audit's tasks are the converted run's")
		require.NotContains(t, ann, webhook.AnnotationAuditReason)

		run := asV1(t, converted)
		require.ElementsMatch(t, splitComma(conv[transform.AnnotationConverted]), emptiedWorkspaces(t, submitted, run),
			"the workspaces convert mode moved from a volumeClaimTemplate to emptyDir")
		var tasks []transform.TaskReport
		require.NoError(t, json.Unmarshal([]byte(ann[webhook.AnnotationAuditTasks]), &tasks))
		did := injected(run)
		require.Len(t, tasks, len(did), "tasks with injected steps in the converted run: %v", did)
		require.NotEmpty(t, auditWarnings)
		require.True(t, strings.HasPrefix(auditWarnings[0], wouldConvert), "first warning: %q", auditWarnings[0])
		// The warning lists the tasks in order, up to its 512 characters.
		rest, cut := strings.CutSuffix(auditWarnings[0], "…")
		for _, task := range tasks {
			steps, ok := did[task.Name]
			require.True(t, ok, "task %s is in the audit but has no injected step", task.Name)
			require.Equal(t, steps.finally, task.Finally, "task %s: finally", task.Name)
			require.ElementsMatch(t, steps.pullsFrom, task.PullsFrom, "task %s: what its pull steps apply", task.Name)
			require.Equal(t, steps.pushes, task.Pushes, "task %s: push step", task.Name)
			says := " " + task.Name + " " + steps.does(task.PullsFrom)
			if i := strings.Index(rest, says); i >= 0 {
				rest = rest[i+len(says):]
				continue
			}
			require.True(t, cut, "the warning says what %s does (%q): %q", task.Name, says, auditWarnings[0])
			require.True(t, strings.HasPrefix(";"+says, rest),
				"the warning is cut within what %s does (%q): %q", task.Name, says, rest)
			break
		}
		requireRelayed(t, auditWarnings[1:], convertWarnings)

	case conv[transform.AnnotationSkippedReason] != "":
		reason := conv[transform.AnnotationSkippedReason]
		require.Equal(t, webhook.AuditWouldLeaveUnchanged, ann[webhook.AnnotationAudit], "convert mode left the run unchanged: %s", reason)
		require.Equal(t, reason, ann[webhook.AnnotationAuditReason], "the audit's reason is the skipped-reason")
		for _, k := range []string{webhook.AnnotationAuditWorkspaces, webhook.AnnotationAuditTasks, webhook.AnnotationAuditTasksOmitted} {
			require.NotContains(t, ann, k)
		}
		require.Equal(t, string(mustJSON(t, submitted["spec"])), string(mustJSON(t, canonical(t, converted.Object)["spec"])),
			"convert mode left the spec unchanged too")
		require.NotEmpty(t, auditWarnings)
		require.NotEmpty(t, convertWarnings)
		require.True(t, strings.HasPrefix(auditWarnings[0], wouldLeave), "first warning: %q", auditWarnings[0])
		require.True(t, strings.HasPrefix(convertWarnings[0], leftUnchanged), "convert's first warning: %q", convertWarnings[0])
		requireSameText(t, strings.TrimPrefix(convertWarnings[0], leftUnchanged), strings.TrimPrefix(auditWarnings[0], wouldLeave))
		requireRelayed(t, auditWarnings[1:], convertWarnings[1:])

	default: // nothing to convert, already converted: neither mode records anything
		for _, k := range auditAnnotationKeys {
			require.NotContains(t, ann, k)
		}
		requireRelayed(t, auditWarnings, convertWarnings)
	}
}

// requireRelayed: the audit gave each of the conversion's own warnings,
// marked as what a conversion would say.
func requireRelayed(t *testing.T, audit, convert []string) {
	t.Helper()
	const once = "oci-transport: audit: once converted: "
	require.Len(t, audit, len(convert), "audit warnings %q, convert warnings %q", audit, convert)
	for i := range convert {
		require.True(t, strings.HasPrefix(audit[i], once), "audit warning %q", audit[i])
		requireSameText(t, strings.TrimPrefix(convert[i], "oci-transport: "), strings.TrimPrefix(audit[i], once))
	}
}

// requireSameText compares two warnings' texts that each side may have
// truncated (with "…") at a different length.
func requireSameText(t *testing.T, a, b string) {
	t.Helper()
	ta, tb := strings.TrimSuffix(a, "…"), strings.TrimSuffix(b, "…")
	if len(ta) > len(tb) {
		ta, tb = tb, ta
	}
	require.True(t, strings.HasPrefix(tb, ta), "warnings differ:\n%s\n%s", a, b)
	if !strings.HasSuffix(a, "…") && !strings.HasSuffix(b, "…") {
		require.Equal(t, a, b)
	}
}

// taskSteps is what convert mode injected into one pipeline task.
type taskSteps struct {
	finally   bool
	pullsFrom []string // the union of its pull steps' --from
	pushes    bool
}

// does says it as the audit's warning does, with the producers in the
// report's order (checked equal to the steps' as a set).
func (s taskSteps) does(order []string) string {
	var does []string
	if len(s.pullsFrom) > 0 {
		does = append(does, "pulls from "+strings.Join(order, ","))
	}
	if s.pushes {
		does = append(does, "pushes")
	}
	if len(does) == 0 {
		return "pulls nothing"
	}
	return strings.Join(does, ", ")
}

// injected reads the pull and push steps convert mode put into each task.
func injected(run *v1.PipelineRun) map[string]taskSteps {
	out := map[string]taskSteps{}
	if run.Spec.PipelineSpec == nil {
		return out
	}
	add := func(pts []v1.PipelineTask, finally bool) {
		for _, pt := range pts {
			if pt.TaskSpec == nil {
				continue
			}
			s, found := taskSteps{finally: finally}, false
			for _, step := range pt.TaskSpec.Steps {
				switch {
				case strings.HasPrefix(step.Name, transform.ReservedPrefix+"pull-"):
					found = true
					if i := slices.Index(step.Args, "--from"); i >= 0 && i+1 < len(step.Args) {
						for _, from := range splitComma(step.Args[i+1]) {
							if !slices.Contains(s.pullsFrom, from) {
								s.pullsFrom = append(s.pullsFrom, from)
							}
						}
					}
				case strings.HasPrefix(step.Name, transform.ReservedPrefix+"push-"):
					found, s.pushes = true, true
				}
			}
			if found {
				out[pt.Name] = s
			}
		}
	}
	add(run.Spec.PipelineSpec.Tasks, false)
	add(run.Spec.PipelineSpec.Finally, true)
	return out
}

// emptiedWorkspaces are the run's workspaces that the submission bound to a
// volumeClaimTemplate and the converted run binds to an emptyDir.
func emptiedWorkspaces(t *testing.T, submitted map[string]any, run *v1.PipelineRun) []string {
	t.Helper()
	var sub struct {
		Spec struct {
			Workspaces []struct {
				Name                string          `json:"name"`
				VolumeClaimTemplate json.RawMessage `json:"volumeClaimTemplate"`
			} `json:"workspaces"`
		} `json:"spec"`
	}
	require.NoError(t, json.Unmarshal(mustJSON(t, submitted), &sub))
	var out []string
	for _, w := range sub.Spec.Workspaces {
		if w.VolumeClaimTemplate == nil {
			continue
		}
		for _, b := range run.Spec.Workspaces {
			if b.Name == w.Name && b.EmptyDir != nil && b.VolumeClaimTemplate == nil {
				out = append(out, w.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// asV1 reads a stored run as the v1 type (a v1beta1 submission is served
// as v1 by the CRD, whose conversion strategy is None).
func asV1(t *testing.T, u *unstructured.Unstructured) *v1.PipelineRun {
	t.Helper()
	run := &v1.PipelineRun{}
	require.NoError(t, json.Unmarshal(mustJSON(t, u.Object), run))
	return run
}

func splitComma(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// canonical is obj through JSON: numbers, maps and a copy the same for a
// submitted and a stored object.
func canonical(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	out := map[string]any{}
	require.NoError(t, json.Unmarshal(mustJSON(t, obj), &out))
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return data
}

// fixtureJSON is a one-document YAML file as JSON.
func fixtureJSON(t *testing.T, path string) []byte {
	t.Helper()
	data, err := readFile(path)
	require.NoError(t, err)
	out, err := yaml.YAMLToJSON(data)
	require.NoError(t, err)
	return out
}

// yamlDocs are the non-empty documents of a YAML file, as JSON.
func yamlDocs(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		j, err := yaml.YAMLToJSON(doc)
		require.NoError(t, err)
		if len(bytes.TrimSpace(j)) == 0 || string(bytes.TrimSpace(j)) == "null" {
			continue
		}
		docs = append(docs, j)
	}
	require.NotEmpty(t, docs, path)
	return docs
}

func (w *warnings) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = nil
}

// ours are the warnings our webhook gave (the API server adds its own, on
// unknown fields for example).
func (w *warnings) ours() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, s := range w.list {
		if strings.HasPrefix(s, "oci-transport: ") {
			out = append(out, s)
		}
	}
	return out
}
