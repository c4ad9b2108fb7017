package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/offline"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/params"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/server"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// reportSource is what the report evaluates, read from a cluster or files,
// and how it resolves references.
type reportSource struct {
	description string
	candidates  []candidate
	resolver    webhook.Resolver
	policies    webhook.VerificationPolicies
	notes       []string
	// wait, when set, returns once the ResolutionRequests are deleted.
	wait func()

	runsRead, templatesRead, convertedAtAdmission int
	// pvcs are the PVCs owned by PipelineRuns, by the owner's UID.
	pvcs map[types.UID][]PVC
	// namespaceLabels returns a namespace's labels, and whether they are known.
	namespaceLabels func(ctx context.Context, namespace string) (map[string]string, bool)
}

// candidate is a PipelineRun, or a TriggerTemplate's PipelineRun, that binds
// a volumeClaimTemplate.
type candidate struct {
	kind, namespace, name, file string
	template                    *TemplateRef
	// run is nil when decodeErr says why it does not decode.
	run       *v1.PipelineRun
	decodeErr error
	labels    map[string]string
	// workspaces are the volumeClaimTemplate bindings.
	workspaces []WorkspaceStorage
	uid        types.UID
	status     string
	finished   bool
	recorded   map[string]string
	unset      []string
}

// runCandidate is the candidate of a PipelineRun, or nil when it binds no
// volumeClaimTemplate; converted reports one the webhook converted.
func runCandidate(run *v1.PipelineRun, file string) (c *candidate, converted bool) {
	if _, ok := run.Annotations[transform.AnnotationConverted]; ok {
		return nil, true
	}
	ws := claimTemplates(run)
	if len(ws) == 0 {
		return nil, false
	}
	name := run.Name
	if name == "" {
		name = run.GenerateName + "*"
	}
	c = &candidate{
		kind: "PipelineRun", namespace: run.Namespace, name: name, file: file,
		run: run, labels: run.Labels, workspaces: ws, uid: run.UID, recorded: recorded(run.Annotations),
	}
	if run.UID != "" || len(run.Status.Conditions) > 0 {
		// A run that exists (in a cluster, or a dump of one): an authored
		// file has no status to speak of.
		c.status, c.finished = runStatus(run)
	}
	return c, false
}

// claimTemplates are a run's volumeClaimTemplate bindings and their
// storage requests.
func claimTemplates(run *v1.PipelineRun) []WorkspaceStorage {
	var out []WorkspaceStorage
	for _, w := range run.Spec.Workspaces {
		if w.VolumeClaimTemplate == nil {
			continue
		}
		q := w.VolumeClaimTemplate.Spec.Resources.Requests[corev1.ResourceStorage]
		out = append(out, WorkspaceStorage{Name: w.Name, Requested: storageOf(q)})
	}
	return out
}

// runStatus is the reason of a run's Succeeded condition and whether the
// run is done.
func runStatus(run *v1.PipelineRun) (string, bool) {
	c := run.Status.GetCondition(apis.ConditionSucceeded)
	switch {
	case c == nil && run.Status.StartTime == nil:
		return "Pending", false
	case c == nil:
		return "Running", false
	case c.Status == corev1.ConditionUnknown:
		if c.Reason == "" {
			return "Running", false
		}
		return c.Reason, false
	default:
		if c.Reason == "" {
			return string(c.Status), true
		}
		return c.Reason, true
	}
}

// recorded are the annotations an admission wrote on a run.
func recorded(annotations map[string]string) map[string]string {
	var out map[string]string
	for _, k := range []string{transform.AnnotationSkippedReason, webhook.AnnotationAudit, webhook.AnnotationAuditReason,
		webhook.AnnotationAuditWorkspaces, webhook.AnnotationAuditTasks, webhook.AnnotationAuditTasksOmitted} {
		if v, ok := annotations[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// ttParam is a TriggerTemplate's $(tt.params.<name>) reference.
var ttParam = regexp.MustCompile(`\$\(tt\.params\.([A-Za-z0-9_.-]+)\)`)

// templateCandidates are the PipelineRuns of a TriggerTemplate's
// resourcetemplates that bind a volumeClaimTemplate, with the template's
// param defaults substituted (Tekton Triggers substitutes what the
// EventListener's bindings pass, which no report can know).
func templateCandidates(tt *unstructured.Unstructured, defaultNamespace, file string) []candidate {
	namespace := tt.GetNamespace()
	if namespace == "" {
		namespace = defaultNamespace
	}
	defaults := map[string]string{}
	ps, _, _ := unstructured.NestedSlice(tt.Object, "spec", "params")
	for _, p := range ps {
		m, _ := p.(map[string]any)
		name, _ := m["name"].(string)
		if d, ok := m["default"]; ok && name != "" {
			defaults[name] = fmt.Sprint(d)
		}
	}
	templates, _, _ := unstructured.NestedSlice(tt.Object, "spec", "resourcetemplates")
	var out []candidate
	for i, rt := range templates {
		m, ok := rt.(map[string]any)
		if !ok || m["kind"] != "PipelineRun" || (m["apiVersion"] != decode.V1 && m["apiVersion"] != decode.V1beta1) || !bindsClaimTemplate(m) {
			continue
		}
		unset := map[string]bool{}
		sub := substituteTemplate(m, defaults, unset)
		c := candidate{kind: "TriggerTemplate", namespace: namespace, name: tt.GetName(), file: file, template: &TemplateRef{Index: i}}
		for n := range unset {
			c.unset = append(c.unset, n)
		}
		sort.Strings(c.unset)
		meta, _ := sub.(map[string]any)["metadata"].(map[string]any)
		c.template.Run, _ = meta["name"].(string)
		if c.template.Run == "" {
			g, _ := meta["generateName"].(string)
			c.template.Run = g + "*"
		}
		if ns, _ := meta["namespace"].(string); ns != "" && !strings.Contains(ns, "$(") {
			c.namespace = ns
		}
		data, err := json.Marshal(sub)
		if err == nil {
			var obj any
			obj, err = decode.Object(data)
			if run, ok := obj.(*v1.PipelineRun); ok && err == nil {
				if run.Namespace == "" || strings.Contains(run.Namespace, "$(") {
					run.Namespace = c.namespace
				}
				c.run, c.labels, c.workspaces = run, run.Labels, claimTemplates(run)
			}
		}
		if c.run == nil {
			c.decodeErr = err
			c.labels, _, _ = unstructured.NestedStringMap(m, "metadata", "labels")
		}
		out = append(out, c)
	}
	return out
}

func bindsClaimTemplate(run map[string]any) bool {
	ws, _, _ := unstructured.NestedSlice(run, "spec", "workspaces")
	for _, w := range ws {
		if m, ok := w.(map[string]any); ok && m["volumeClaimTemplate"] != nil {
			return true
		}
	}
	return false
}

// substituteTemplate replaces $(tt.params.x) in every string of v with x's
// default, and records the params without one.
func substituteTemplate(v any, defaults map[string]string, unset map[string]bool) any {
	switch tv := v.(type) {
	case string:
		return ttParam.ReplaceAllStringFunc(tv, func(ref string) string {
			name := ttParam.FindStringSubmatch(ref)[1]
			if d, ok := defaults[name]; ok {
				return d
			}
			unset[name] = true
			return ref
		})
	case map[string]any:
		out := make(map[string]any, len(tv))
		for k, x := range tv {
			out[k] = substituteTemplate(x, defaults, unset)
		}
		return out
	case []any:
		out := make([]any, len(tv))
		for i, x := range tv {
			out[i] = substituteTemplate(x, defaults, unset)
		}
		return out
	}
	return v
}

// pvcOwners indexes PVCs by the PipelineRun that owns them.
func pvcOwners(pvcs []corev1.PersistentVolumeClaim) map[types.UID][]PVC {
	out := map[types.UID][]PVC{}
	for _, p := range pvcs {
		for _, o := range p.OwnerReferences {
			if o.Kind != "PipelineRun" || !strings.HasPrefix(o.APIVersion, "tekton.dev/") {
				continue
			}
			size, ok := p.Status.Capacity[corev1.ResourceStorage]
			if !ok {
				size = p.Spec.Resources.Requests[corev1.ResourceStorage]
			}
			out[o.UID] = append(out[o.UID], PVC{Name: p.Name, Size: storageOf(size), Phase: string(p.Status.Phase)})
		}
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	return out
}

// --- files ---

// filesSource reads the documents of files: PipelineRuns, TriggerTemplates,
// Pipelines and Tasks (references are resolved against them, as `convert`
// does), PVCs, Namespaces (their opt-in labels), and v1 Lists of any of
// these; every other kind is skipped.
func filesSource(files []string, stdin io.Reader, namespace string, noRemote bool) (*reportSource, error) {
	if namespace == "" {
		namespace = "default"
	}
	src := &reportSource{description: "files " + strings.Join(files, ", ")}
	var (
		docs      []offline.Document
		runs      []offline.Document
		runWhere  []string
		templates []*unstructured.Unstructured
		tplFiles  []string
		pvcs      []corev1.PersistentVolumeClaim
		skipped   = map[string]int{}
	)
	nsLabels := map[string]map[string]string{}
	for _, file := range files {
		raws, err := readDocuments(file, stdin)
		if err != nil {
			return nil, err
		}
		for _, rd := range raws {
			bad := func(err error) error { return &offline.Error{File: file, Index: rd.index, Err: err} }
			tm, err := decode.TypeMeta(rd.data)
			if err != nil {
				return nil, bad(err)
			}
			switch {
			case tm.APIVersion == decode.V1 || tm.APIVersion == decode.V1beta1:
				switch tm.Kind {
				case "PipelineRun", "Pipeline", "Task":
				default:
					skipped[tm.APIVersion+" "+tm.Kind]++
					continue
				}
				obj, err := decode.Object(rd.data)
				if err != nil {
					return nil, bad(err)
				}
				sum := sha256.Sum256(rd.data)
				d := offline.Document{File: file, Index: rd.index, Object: obj, Digest: hex.EncodeToString(sum[:])}
				if run, ok := obj.(*v1.PipelineRun); ok {
					if run.Namespace == "" {
						run.Namespace = namespace
					}
					runs, runWhere = append(runs, d), append(runWhere, rd.where(file))
				}
				docs = append(docs, d)
			case strings.HasPrefix(tm.APIVersion, "triggers.tekton.dev/") && tm.Kind == "TriggerTemplate":
				u := &unstructured.Unstructured{}
				if err := yaml.Unmarshal(rd.data, &u.Object); err != nil {
					return nil, bad(err)
				}
				templates, tplFiles = append(templates, u), append(tplFiles, rd.where(file))
			case tm.APIVersion == "v1" && tm.Kind == "Namespace":
				var ns corev1.Namespace
				if err := yaml.Unmarshal(rd.data, &ns); err != nil {
					return nil, bad(err)
				}
				nsLabels[ns.Name] = ns.Labels
			case tm.APIVersion == "v1" && tm.Kind == "PersistentVolumeClaim":
				var p corev1.PersistentVolumeClaim
				if err := yaml.Unmarshal(rd.data, &p); err != nil {
					return nil, bad(err)
				}
				pvcs = append(pvcs, p)
			default:
				skipped[tm.APIVersion+" "+tm.Kind]++
			}
		}
	}
	for i, d := range runs {
		src.runsRead++
		c, converted := runCandidate(d.Object.(*v1.PipelineRun), runWhere[i])
		if converted {
			src.convertedAtAdmission++
		}
		if c != nil {
			src.candidates = append(src.candidates, *c)
		}
	}
	for i, tt := range templates {
		src.templatesRead++
		src.candidates = append(src.candidates, templateCandidates(tt, namespace, tplFiles[i])...)
	}
	src.pvcs = pvcOwners(pvcs)
	src.namespaceLabels = func(_ context.Context, ns string) (map[string]string, bool) {
		l, ok := nsLabels[ns]
		return l, ok
	}
	src.resolver = filesResolver{files: offline.Files(docs), noRemote: noRemote}
	if len(skipped) > 0 {
		kinds := make([]string, 0, len(skipped))
		for k, n := range skipped {
			kinds = append(kinds, fmt.Sprintf("%s (%d)", k, n))
		}
		sort.Strings(kinds)
		src.notes = append(src.notes, "skipped documents of other kinds: "+strings.Join(kinds, ", "))
	}
	src.notes = append(src.notes, "from files: VerificationPolicies are not known (a run in a namespace with one would be left unchanged, VerificationPolicyInNamespace)")
	return src, nil
}

// rawDocument is one document of a file (an item of a List counts as the
// List's).
type rawDocument struct {
	index int
	// item is the position in a List, -1 for a document of its own.
	item int
	data []byte
}

// where names a document for File: the file and the document's index, and
// the item's in a List.
func (d rawDocument) where(file string) string {
	if d.item < 0 {
		return fmt.Sprintf("%s#%d", file, d.index)
	}
	return fmt.Sprintf("%s#%d.items[%d]", file, d.index, d.item)
}

// readDocuments splits a file into documents, expanding v1 Lists (what
// `kubectl get -o yaml` writes).
func readDocuments(path string, stdin io.Reader) ([]rawDocument, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []rawDocument
	for i := 0; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, &offline.Error{File: path, Index: i, Err: err}
		}
		if len(bytes.TrimSpace(offline.StripComments(raw))) == 0 {
			continue
		}
		tm, err := decode.TypeMeta(raw)
		if err != nil {
			return nil, &offline.Error{File: path, Index: i, Err: err}
		}
		if tm.Kind != "List" {
			out = append(out, rawDocument{index: i, item: -1, data: raw})
			continue
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := yaml.Unmarshal(raw, &list); err != nil {
			return nil, &offline.Error{File: path, Index: i, Err: err}
		}
		for j, item := range list.Items {
			out = append(out, rawDocument{index: i, item: j, data: item})
		}
	}
}

// filesResolver resolves through package resolution, as the webhook and
// convert do, reading references from the files.
type filesResolver struct {
	files    offline.Files
	noRemote bool
}

func (r filesResolver) Resolve(ctx context.Context, run *v1.PipelineRun, _ bool) (transform.Resolved, error) {
	return resolution.Resolve(ctx, run, filesFetcher(r))
}

type filesFetcher filesResolver

// offlineResolvers are the remote resolvers whose references files can
// answer (transform/offline).
var offlineResolvers = map[string]bool{"hub": true, "bundles": true, "git": true, "http": true}

// Fetch reads plain and cluster-resolver references from the files; a
// remote one too, unless --no-remote, and when no file answers it only the
// cluster's resolver could tell (needs-remote-resolution).
func (f filesFetcher) Fetch(ctx context.Context, ref resolution.Reference) (any, resolution.Origin, error) {
	if ref.Resolver == "" || ref.Resolver == "cluster" {
		return f.files.Fetch(ctx, ref)
	}
	if f.noRemote {
		return nil, resolution.Origin{}, resolution.Fail(resolution.ReasonDryRun, "%s from resolver %q needs remote resolution, which --no-remote does not read from the files", ref.Kind, ref.Resolver)
	}
	if !offlineResolvers[ref.Resolver] {
		return nil, resolution.Origin{}, resolution.Fail(resolution.ReasonDryRun, "%s from resolver %q: files cannot answer it, the cluster's resolver would", ref.Kind, ref.Resolver)
	}
	obj, origin, err := f.files.Fetch(ctx, ref)
	if errors.Is(err, resolution.ErrNotFound) {
		return nil, origin, resolution.Fail(resolution.ReasonDryRun, "%s from resolver %q: no supplied file answers (%v); the cluster's resolver would", ref.Kind, ref.Resolver, errors.Unwrap(err))
	}
	return obj, origin, err
}

// --- cluster ---

// triggerTemplateVersions are the TriggerTemplate versions tried, newest first.
var triggerTemplateVersions = []string{"v1beta1", "v1alpha1"}

// clusterSource lists PipelineRuns, TriggerTemplates and PVCs of the
// namespaces, as the kubeconfig's user, and resolves as the webhook does.
// It writes nothing but the ResolutionRequests the resolver creates and
// deletes.
func clusterSource(ctx context.Context, kubeconfig, namespaces string, all bool, timeout time.Duration, ignorePolicy bool, stderr io.Writer) (*reportSource, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		if kubeconfig != "" {
			return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
		}
		if rc, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("no kubeconfig and not in a cluster: %w", err)
		}
	}
	// The defaults (5 per second) would make a large scan crawl.
	rc.QPS, rc.Burst = 50, 100
	scheme, err := server.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", rc.Host, err)
	}
	var scope []string
	switch {
	case all:
		scope = []string{metav1.NamespaceAll}
	case namespaces != "":
		scope = strings.Split(namespaces, ",")
	default:
		ns, _, err := cc.Namespace()
		if err != nil || ns == "" {
			ns = metav1.NamespaceDefault
		}
		scope = []string{ns}
	}
	src := &reportSource{description: "cluster " + rc.Host + ", " + describeScope(scope)}
	fmt.Fprintf(stderr, "report: reading %s\n", src.description)

	var pvcs []corev1.PersistentVolumeClaim
	for _, ns := range scope {
		var runs []v1.PipelineRun
		err := listAll(ctx, c, ns, &v1.PipelineRunList{}, func(l client.ObjectList) {
			runs = append(runs, l.(*v1.PipelineRunList).Items...)
		})
		if err != nil {
			return nil, fmt.Errorf("listing PipelineRuns in %s: %w", describeScope([]string{ns}), err)
		}
		for i := range runs {
			src.runsRead++
			c, converted := runCandidate(&runs[i], "")
			if converted {
				src.convertedAtAdmission++
			}
			if c != nil {
				src.candidates = append(src.candidates, *c)
			}
		}

		templates, note := listTemplates(ctx, c, ns)
		if note != "" {
			src.notes = appendOnce(src.notes, note)
		}
		for _, tt := range templates {
			src.templatesRead++
			src.candidates = append(src.candidates, templateCandidates(tt, ns, "")...)
		}

		err = listAll(ctx, c, ns, &corev1.PersistentVolumeClaimList{}, func(l client.ObjectList) {
			pvcs = append(pvcs, l.(*corev1.PersistentVolumeClaimList).Items...)
		})
		if err != nil {
			src.notes = appendOnce(src.notes, fmt.Sprintf("PVCs not read (%s): the PVCs finished runs hold are not counted", reasonOf(err)))
		}
	}
	src.pvcs = pvcOwners(pvcs)

	nsCache := &namespaceCache{c: c, labels: map[string]nsEntry{}}
	src.namespaceLabels = nsCache.get
	res := &resolve.Resolver{Cache: &memoReader{Reader: c, got: map[string]memoEntry{}}, Client: c, Live: c, Timeout: timeout, Log: logr.Discard()}
	src.resolver, src.wait = res, res.Wait
	if !ignorePolicy {
		src.policies = &clusterPolicies{c: c, got: map[string][]string{}}
	}
	return src, nil
}

func describeScope(scope []string) string {
	if len(scope) == 1 && scope[0] == metav1.NamespaceAll {
		return "all namespaces"
	}
	if len(scope) == 1 {
		return "namespace " + scope[0]
	}
	return "namespaces " + strings.Join(scope, ", ")
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func reasonOf(err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return "forbidden for the kubeconfig's user"
	case isNoMatch(err):
		return "its CRD is not installed"
	}
	return oneLine(err)
}

func isNoMatch(err error) bool {
	var kind *meta.NoKindMatchError
	var res *meta.NoResourceMatchError
	return errors.As(err, &kind) || errors.As(err, &res) || meta.IsNoMatchError(err) || apierrors.IsNotFound(err)
}

// listAll lists a kind in a namespace page by page.
func listAll(ctx context.Context, c client.Reader, namespace string, list client.ObjectList, each func(client.ObjectList)) error {
	opts := []client.ListOption{client.Limit(250)}
	if namespace != metav1.NamespaceAll {
		opts = append(opts, client.InNamespace(namespace))
	}
	for {
		if err := c.List(ctx, list, opts...); err != nil {
			return err
		}
		each(list)
		token := list.(metav1.ListInterface).GetContinue()
		if token == "" {
			return nil
		}
		opts = append(opts[:len(opts):len(opts)], client.Continue(token))
	}
}

// listTemplates lists TriggerTemplates in the newest version served; the
// note says why none could be read.
func listTemplates(ctx context.Context, c client.Reader, namespace string) ([]*unstructured.Unstructured, string) {
	var lastErr error
	for _, version := range triggerTemplateVersions {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(schema.GroupVersionKind{Group: "triggers.tekton.dev", Version: version, Kind: "TriggerTemplateList"})
		var out []*unstructured.Unstructured
		err := listAll(ctx, c, namespace, list, func(l client.ObjectList) {
			for i := range l.(*unstructured.UnstructuredList).Items {
				out = append(out, &l.(*unstructured.UnstructuredList).Items[i])
			}
		})
		if err == nil {
			return out, ""
		}
		lastErr = err
		if !isNoMatch(err) {
			break
		}
	}
	return nil, fmt.Sprintf("TriggerTemplates not read (%s)", reasonOf(lastErr))
}

// memoReader remembers what it read (found or not found) for the length of
// a report: many runs reference the same Pipeline and Tasks.
type memoReader struct {
	client.Reader
	mu  sync.Mutex
	got map[string]memoEntry
}

type memoEntry struct {
	obj client.Object
	err error
}

func (m *memoReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	k := fmt.Sprintf("%T/%s", obj, key)
	m.mu.Lock()
	e, ok := m.got[k]
	m.mu.Unlock()
	if ok {
		if e.err != nil {
			return e.err
		}
		reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(e.obj.DeepCopyObject()).Elem())
		return nil
	}
	err := m.Reader.Get(ctx, key, obj, opts...)
	if err == nil || apierrors.IsNotFound(err) {
		m.mu.Lock()
		m.got[k] = memoEntry{obj: obj.DeepCopyObject().(client.Object), err: err}
		m.mu.Unlock()
	}
	return err
}

// namespaceCache reads namespace labels once each (metadata only).
type namespaceCache struct {
	c      client.Reader
	mu     sync.Mutex
	labels map[string]nsEntry
}

type nsEntry struct {
	labels map[string]string
	known  bool
}

func (n *namespaceCache) get(ctx context.Context, namespace string) (map[string]string, bool) {
	n.mu.Lock()
	e, ok := n.labels[namespace]
	n.mu.Unlock()
	if ok {
		return e.labels, e.known
	}
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(webhook.NamespaceGVK)
	err := n.c.Get(ctx, types.NamespacedName{Name: namespace}, ns)
	e = nsEntry{labels: ns.Labels, known: err == nil}
	n.mu.Lock()
	n.labels[namespace] = e
	n.mu.Unlock()
	return e.labels, e.known
}

// clusterPolicies lists a namespace's VerificationPolicies once; without
// the CRD there are none.
type clusterPolicies struct {
	c   client.Reader
	mu  sync.Mutex
	got map[string][]string
}

func (p *clusterPolicies) VerificationPolicies(ctx context.Context, namespace string) ([]string, error) {
	p.mu.Lock()
	names, ok := p.got[namespace]
	p.mu.Unlock()
	if ok {
		return names, nil
	}
	names, err := webhook.CachedVerificationPolicies{Reader: p.c}.VerificationPolicies(ctx, namespace)
	if err != nil && isNoMatch(err) {
		names, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.got[namespace] = names
	p.mu.Unlock()
	return names, nil
}

// --- evaluation ---

// evaluateCandidate decides for one candidate as the webhook's handler does
// (webhook.Handler.Evaluate), with the run's status and our annotations
// left out.
func evaluateCandidate(ctx context.Context, h *webhook.Handler, src *reportSource, c candidate, noRemote bool) ReportItem {
	it := ReportItem{
		Kind: c.kind, Namespace: c.namespace, Name: c.name, Template: c.template, File: c.file,
		Workspaces: c.workspaces, Status: c.status, Finished: c.finished, PVCs: src.pvcs[c.uid],
		Recorded: c.recorded, UnsetTemplateParams: c.unset,
	}
	if it.Workspaces == nil {
		it.Workspaces = []WorkspaceStorage{}
	}
	var requested int64
	for _, w := range c.workspaces {
		requested += w.Requested.Bytes
	}
	it.Requested = bytesStorage(requested)
	it.OptIn = optInOf(ctx, h.LabelKey, c.labels, c.namespace, src)
	if c.run == nil {
		it.Verdict, it.Reason, it.Message = verdictWouldLeave, webhook.ReasonInvalidPipelineRun, oneLine(c.decodeErr)
		return it
	}
	run := c.run.DeepCopy()
	run.Status = v1.PipelineRunStatus{}
	run.Annotations = webhook.WithoutAuditAnnotations(run.Annotations)
	delete(run.Annotations, transform.AnnotationSkippedReason)
	v := h.Evaluate(ctx, run, c.namespace, noRemote)
	it.Pipeline = pipelineKey(run)
	if p := v.Resolved.Pipeline; p != nil {
		it.resolvedPipeline = true
		for _, w := range p.Spec.Workspaces {
			it.declared = append(it.declared, DeclaredWorkspace{Name: w.Name, Optional: w.Optional})
		}
	}
	switch {
	case v.Failure != "":
		it.Verdict, it.Message = verdictError, v.Failure
	case v.Outcome == transform.Converted:
		it.Verdict, it.Tasks, it.Warnings = verdictWouldConvert, v.Report.Tasks, v.Report.Warnings
	case v.Outcome == transform.AlreadyConverted:
		it.Verdict = verdictAlready
	case v.Outcome == transform.Unchanged && v.Reason == string(resolution.ReasonDryRun):
		it.Verdict, it.Message = verdictNeedsRemote, strings.ReplaceAll(v.Message, "which a dry run must not create", "which --no-remote does not create")
	case v.Outcome == transform.Unchanged:
		it.Verdict, it.Reason, it.Message, it.Warnings = verdictWouldLeave, v.Reason, v.Message, v.Report.Warnings
	default: // NothingToConvert cannot be: every candidate binds one
		it.Verdict, it.Message = verdictError, "unexpected outcome "+string(v.Outcome)
	}
	return it
}

// optInOf is what the labels ask for: convert, audit, opted-out, no, or
// unknown when the namespace's labels were not read and the run's do not
// decide.
func optInOf(ctx context.Context, key string, labels map[string]string, namespace string, src *reportSource) string {
	if key == "" {
		key = transform.EnabledLabel
	}
	o := webhook.DecideOptIn(labels, nil, key)
	if o == webhook.NotOptedIn {
		nsLabels, known := src.namespaceLabels(ctx, namespace)
		if !known {
			return "unknown"
		}
		o = webhook.DecideOptIn(labels, nsLabels, key)
	}
	if o == webhook.NotOptedIn {
		return "no"
	}
	return string(o)
}

// pipelineKey names the Pipeline a run references: namespace/name, or the
// resolver and its params as written (so every run of one reference
// groups, whatever its params' values).
func pipelineKey(run *v1.PipelineRun) string {
	ref := run.Spec.PipelineRef
	if ref == nil {
		return ""
	}
	if ref.Resolver == "" {
		return run.Namespace + "/" + ref.Name
	}
	m := params.Map(ref.Params)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return string(ref.Resolver) + ": " + strings.Join(parts, ", ")
}

// pipelinesOf groups the items by the Pipeline they reference.
func pipelinesOf(items []ReportItem) []PipelineItem {
	byKey := map[string]*PipelineItem{}
	var keys []string
	for _, it := range items {
		if it.Pipeline == "" {
			continue
		}
		p, ok := byKey[it.Pipeline]
		if !ok {
			p = &PipelineItem{Key: it.Pipeline, Namespace: it.Namespace, BoundToVolumeClaimTemplate: []string{}, Verdicts: map[string]int{}}
			byKey[it.Pipeline] = p
			keys = append(keys, it.Pipeline)
		}
		if it.resolvedPipeline && !p.Resolved {
			p.Resolved, p.Declared = true, it.declared
		}
		for _, w := range it.Workspaces {
			if !contains(p.BoundToVolumeClaimTemplate, w.Name) {
				p.BoundToVolumeClaimTemplate = append(p.BoundToVolumeClaimTemplate, w.Name)
			}
		}
		ref := it.Kind + " " + it.Namespace + "/" + it.Name
		if it.Template != nil {
			ref += fmt.Sprintf("[%d]", it.Template.Index)
		}
		p.ReferencedBy = append(p.ReferencedBy, ref)
		p.Verdicts[it.Verdict]++
	}
	sort.Strings(keys)
	out := make([]PipelineItem, 0, len(keys))
	for _, k := range keys {
		sort.Strings(byKey[k].BoundToVolumeClaimTemplate)
		out = append(out, *byKey[k])
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
