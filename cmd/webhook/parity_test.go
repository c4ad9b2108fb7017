package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/offline"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/transformtest"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve/resolvetest"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/webhooktest"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"
)

// The golden folders every case of which the parity test runs.
const (
	transformCases = "../../transform/testdata"
	webhookCases   = "../../webhook/testdata"
)

// singlePath lists the cases only one of the two paths can decide, each with
// why. Every other case of both folders is run through both.
var singlePath = map[string]string{
	"webhook/update-ignored":     "an UPDATE request: the webhook converts only on CREATE; convert has no operation",
	"webhook/dry-run-remote":     "a dry run that needs remote resolution: the webhook must not create ResolutionRequests and admits it without a verdict; convert reads files",
	"webhook/dry-run-strict":     "a dry run that needs remote resolution, in strict mode: as dry-run-remote",
	"webhook/strict-denied":      "strict mode denies the run: there is no object to compare, and convert has no strict mode",
	"webhook/invalid-object":     "an object Tekton's types cannot decode: the webhook admits it with a skipped-reason; convert rejects the file as bad input (exit 1)",
	"webhook/resolution-timeout": "a resolver that never answers: offline there is no resolver to wait for",
	"webhook/resolution-failed":  "a resolver that answers with a failure: offline there is only the files (a missing one is ReferenceNotFound)",
	"transform/missing-task":     "a hub reference no file answers: a remote resolver says so as its own failure (ResolutionFailed, in its words), convert only knows no file was supplied (ReferenceNotFound); a missing Task read by name is webhook/missing-task, which both decide",
	"webhook/not-opted-in":       "opt-in by the namespace's label, which convert cannot see (it takes every run as opted in)",

	"webhook/audit-would-convert":         "audit mode: the webhook admits the run unchanged but for audit annotations; convert has no audit mode (TestAuditMatchesConvert in webhook compares the two modes)",
	"webhook/audit-would-leave-unchanged": "audit mode, as audit-would-convert",
	"webhook/audit-not-opted-in":          "audit mode, and opt-in by the namespace's label, which convert cannot see",
	"webhook/audit-namespace-label":       "audited for its namespace's label, which convert cannot see",
	"webhook/audit-run-label":             "audited for its \"audit\" label; convert shows the conversion itself",
	"webhook/audit-recorded":              "audit mode, as audit-would-convert",
	"webhook/audit-skipped-earlier":       "audit mode, as audit-would-convert",
}

// TestParityWithTheWebhook: every case of transform/testdata and
// webhook/testdata goes through the admission handler (raw request, patch
// applied to the raw object) and through `convert` (files in, YAML out),
// and both give the same object, which Tekton's SetDefaults+Validate accept.
//
// The two outputs are compared decoded to Tekton's v1 types and written
// back: that is what Tekton reads and runs, and the only form in which they
// can be equal, since the webhook patches the raw object, which keeps the
// user's spelling of what it does not change (`timeout: 5m`, `subPath: ""`,
// fields the types do not know, v1beta1), while convert writes every field
// from the types. The types cannot tell an empty object from an absent
// one, which is where the two paths' pruning would differ, so for a v1
// request the empty objects and nulls each path added to the raw object are
// compared too.
func TestParityWithTheWebhook(t *testing.T) {
	cases := append(caseDirs(t, "transform", transformCases), caseDirs(t, "webhook", webhookCases)...)
	known := map[string]bool{}
	for _, c := range cases {
		known[c.name] = true
	}
	for name := range singlePath {
		require.Truef(t, known[name], "%s is listed but is no case: remove it from the list", name)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if why, ok := singlePath[c.name]; ok {
				t.Skipf("only one path decides: %s", why)
			}
			t.Parallel()
			runParity(t, c)
		})
	}
}

// caseDir is one golden case folder.
type caseDir struct {
	name string // <folder>/<case>
	dir  string
	kind string // "transform" or "webhook"
}

// caseDirs lists every case of a testdata folder (a folder with an
// input.yaml), so a new case is picked up without naming it here.
func caseDirs(t *testing.T, kind, root string) []caseDir {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join(root, "*", "input.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, inputs, root)
	var out []caseDir
	for _, in := range inputs {
		dir := filepath.Dir(in)
		out = append(out, caseDir{name: kind + "/" + filepath.Base(dir), dir: dir, kind: kind})
	}
	return out
}

// parityCase is what both paths are given: the same run and the same
// documents, as an admission request and a fake cluster for the handler,
// and as files for convert.
type parityCase struct {
	dir     string
	request admissionv1.AdmissionRequest
	config  webhooktest.Config
	// runFile holds the request's raw object; files every other document.
	runFile string
	files   []string
	// namespaces are Namespace documents: only the handler's cluster has
	// namespaces.
	namespaces [][]byte
}

func runParity(t *testing.T, c caseDir) {
	var pc parityCase
	if c.kind == "transform" {
		pc = fromTransformCase(t, c.dir)
	} else {
		pc = fromWebhookCase(t, c.dir)
	}
	docs := loadFiles(t, pc.files)
	viaWebhook := throughHandler(t, pc, docs)
	viaConvert := throughConvert(t, pc)

	fromWebhook, fromConvert := decodeRun(t, viaWebhook), decodeRun(t, viaConvert)
	require.Equal(t, encodeRun(t, fromConvert), encodeRun(t, fromWebhook), "the webhook and convert give different runs (as Tekton v1)")
	if pc.request.Kind.Version == "v1" { // a v1beta1 object's paths are not v1's
		js, err := yaml.YAMLToJSON(viaConvert)
		require.NoError(t, err)
		raw := pc.request.Object.Raw
		require.Equal(t, addedEmpties(t, raw, js), addedEmpties(t, raw, viaWebhook), "the webhook and convert add different empty objects or nulls")
	}
	require.NoError(t, transformtest.Validate(c.dir, fromWebhook))
}

// fromTransformCase: input.yaml is the run and the documents it references,
// refs/ more of them (a remote resolver's answers, matched by file name).
// The run gets a namespace as the API server gives it.
func fromTransformCase(t *testing.T, dir string) parityCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	require.NoError(t, err)
	docs := splitYAML(t, data)
	require.NotEmpty(t, docs)
	raw := withNamespace(t, docs[0], webhooktest.DefaultNamespace)
	tmp := t.TempDir()
	pc := parityCase{dir: dir, request: createRequest(t, raw), runFile: writeFile(t, tmp, "run.json", raw)}
	if len(docs) > 1 {
		pc.files = append(pc.files, writeFile(t, tmp, "input.yaml", bytes.Join(docs[1:], []byte("\n---\n"))))
	}
	refs, err := filepath.Glob(filepath.Join(dir, "refs", "*.yaml"))
	require.NoError(t, err)
	pc.files = append(pc.files, refs...)
	return pc
}

// fromWebhookCase: input.yaml is the AdmissionReview; cluster.yaml's Tekton
// objects and resolutions.yaml's answers become files for convert (an
// answer under the file name the offline resolver matches for it).
func fromWebhookCase(t *testing.T, dir string) parityCase {
	t.Helper()
	review, err := webhooktest.ReadReview(filepath.Join(dir, "input.yaml"))
	require.NoError(t, err)
	cfg, err := webhooktest.ReadConfig(filepath.Join(dir, "config.yaml"))
	require.NoError(t, err)
	tmp := t.TempDir()
	pc := parityCase{dir: dir, request: *review.Request, config: cfg, runFile: writeFile(t, tmp, "run.json", review.Request.Object.Raw)}

	cluster, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		require.NoError(t, err)
	}
	var objects [][]byte
	for _, doc := range webhooktest.SplitDocuments(cluster) {
		tm, err := decode.TypeMeta(doc)
		require.NoError(t, err)
		if tm.Kind == "Namespace" {
			pc.namespaces = append(pc.namespaces, doc)
			continue
		}
		objects = append(objects, doc)
	}
	if len(objects) > 0 {
		pc.files = append(pc.files, writeFile(t, tmp, "cluster.yaml", bytes.Join(objects, []byte("\n---\n"))))
	}
	answers, err := resolvetest.Load(filepath.Join(dir, "resolutions.yaml"))
	if err == nil {
		for i, a := range answers {
			require.Truef(t, a.Fail == "" && !a.Never, "answer %d of resolutions.yaml fails or never comes, which no file can say: list the case in singlePath", i)
			data, err := yaml.Marshal(a.Object)
			require.NoError(t, err)
			pc.files = append(pc.files, writeFile(t, filepath.Join(tmp, fmt.Sprint(i)), answerFile(a), data))
		}
	}
	return pc
}

// answerFile is the file name offline.Files matches a resolver's answer by:
// the git and http resolvers' by its base name, the others' by the object's
// name (any file name).
func answerFile(a resolvetest.Answer) string {
	switch a.Resolver {
	case "git":
		return path.Base(a.Params["pathInRepo"])
	case "http":
		return path.Base(a.Params["url"])
	default:
		return a.Resolver + ".yaml"
	}
}

// throughHandler admits the request with a fake cluster holding every
// document convert reads (offline, any supplied object resolves by name)
// and the case's namespaces, Tekton's resolvers answering from the same
// files; it returns the raw object with the patch applied.
func throughHandler(t *testing.T, pc parityCase, docs []offline.Document) []byte {
	t.Helper()
	objects := append([][]byte(nil), pc.namespaces...)
	if !declaresNamespace(t, pc.namespaces, pc.request.Namespace) {
		// convert takes every run as opted in: so does this namespace.
		objects = append(objects, []byte(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {%s: \"true\"}}\n", pc.request.Namespace, transform.EnabledLabel)))
	}
	for _, f := range pc.files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		objects = append(objects, splitYAML(t, data)...)
	}
	c, err := webhooktest.ClusterIn(pc.request.Namespace, objects...)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resolver := &resolvetest.Resolver{Client: c, Lookup: resolvetest.Files(docs)}
	go resolver.Run(ctx, 5*time.Millisecond)
	h := webhooktest.Handler(c, pc.config.Strict, pc.config.Timeout(), testr.New(t))
	resp := h.Handle(ctx, admission.Request{AdmissionRequest: pc.request})
	require.Truef(t, resp.Allowed, "denied: %v", resp.Result)
	out, err := webhooktest.Apply(pc.request.Object.Raw, resp)
	require.NoError(t, err)
	return out
}

// throughConvert runs `webhook convert` with the handler's options as flags
// and returns what it prints.
func throughConvert(t *testing.T, pc parityCase) []byte {
	t.Helper()
	o := webhooktest.Options
	require.Len(t, o.StepCommand, 1)
	args := []string{
		"--registry=" + o.Registry, "--repository-prefix=" + o.RepositoryPrefix, fmt.Sprintf("--plain-http=%t", o.PlainHTTP),
		"--step-image=" + o.StepImage, "--step-command=" + o.StepCommand[0],
		"-f", pc.runFile,
	}
	for _, f := range pc.files {
		args = append(args, "-f", f)
	}
	var stdout, stderr bytes.Buffer
	code := runConvert(args, strings.NewReader(""), &stdout, &stderr)
	require.Containsf(t, []int{exitConverted, exitUnchanged}, code, "convert: exit %d: %s", code, stderr.String())
	return stdout.Bytes()
}

// addedEmpties lists the paths of out that hold an empty object or null
// where raw holds none: what a path's writing (and pruning) added. Both
// outputs being equal as types, list positions line up.
func addedEmpties(t *testing.T, raw, out []byte) []string {
	t.Helper()
	var in, got any
	require.NoError(t, json.Unmarshal(raw, &in))
	require.NoError(t, json.Unmarshal(out, &got))
	var paths []string
	var walk func(path string, v, before any)
	walk = func(path string, v, before any) {
		switch tv := v.(type) {
		case nil:
			if before != nil {
				paths = append(paths, path+"=null")
			}
		case map[string]any:
			if b, ok := before.(map[string]any); len(tv) == 0 && (!ok || len(b) > 0) {
				paths = append(paths, path+"={}")
			}
			b, _ := before.(map[string]any)
			for k, cv := range tv {
				bv, ok := b[k]
				if !ok {
					bv = absent{}
				}
				walk(path+"/"+k, cv, bv)
			}
		case []any:
			b, _ := before.([]any)
			for i, cv := range tv {
				var bv any = absent{}
				if i < len(b) {
					bv = b[i]
				}
				walk(fmt.Sprintf("%s/%d", path, i), cv, bv)
			}
		}
	}
	walk("", got, in)
	slices.Sort(paths)
	return paths
}

// absent marks a path raw does not have.
type absent struct{}

func loadFiles(t *testing.T, files []string) []offline.Document {
	t.Helper()
	var docs []offline.Document
	for _, f := range files {
		d, err := offline.LoadFile(f, nil)
		require.NoError(t, err)
		docs = append(docs, d...)
	}
	return docs
}

func declaresNamespace(t *testing.T, namespaces [][]byte, name string) bool {
	t.Helper()
	for _, doc := range namespaces {
		var ns metav1.PartialObjectMetadata
		require.NoError(t, yaml.Unmarshal(doc, &ns))
		if ns.Name == name {
			return true
		}
	}
	return false
}

// createRequest is the CREATE request the API server sends for raw.
func createRequest(t *testing.T, raw []byte) admissionv1.AdmissionRequest {
	t.Helper()
	var head struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(raw, &head))
	version := strings.TrimPrefix(head.APIVersion, "tekton.dev/")
	return admissionv1.AdmissionRequest{
		UID:       types.UID("parity-" + head.Name + head.GenerateName),
		Kind:      metav1.GroupVersionKind{Group: "tekton.dev", Version: version, Kind: "PipelineRun"},
		Resource:  metav1.GroupVersionResource{Group: "tekton.dev", Version: version, Resource: "pipelineruns"},
		Name:      head.Name,
		Namespace: head.Namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// withNamespace is doc as JSON, with namespace when it names none: the API
// server fills it in from the request before admission.
func withNamespace(t *testing.T, doc []byte, namespace string) []byte {
	t.Helper()
	js, err := yaml.YAMLToJSON(doc)
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, json.Unmarshal(js, &obj))
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	if ns, _ := meta["namespace"].(string); ns == "" {
		meta["namespace"] = namespace
	}
	out, err := json.Marshal(obj)
	require.NoError(t, err)
	return out
}

// splitYAML splits a multi-document stream as offline.Load does, keeping
// each document's bytes (and so its digest).
func splitYAML(t *testing.T, data []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err)
		if _, err := decode.TypeMeta(doc); err == nil && len(bytes.TrimSpace(offline.StripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

func decodeRun(t *testing.T, data []byte) *v1.PipelineRun {
	t.Helper()
	obj, err := decode.Object(data)
	require.NoError(t, err)
	run, ok := obj.(*v1.PipelineRun)
	require.Truef(t, ok, "%T", obj)
	return run
}

func encodeRun(t *testing.T, run *v1.PipelineRun) string {
	t.Helper()
	out, err := offline.EncodeYAML(run)
	require.NoError(t, err)
	return string(out)
}
