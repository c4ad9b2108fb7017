package main

import (
	"context"
	"encoding/json"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/golden"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve/resolvetest"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/server"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// TestReportAgainstAPIServer: `webhook report` against a real kube-apiserver
// with Tekton's CRDs and the TriggerTemplate CRD, as a user who may only read
// what the report reads and create, read and delete ResolutionRequests:
// runs of each verdict (one resolved through a remote resolver, answered by
// the test resolver), PVCs owned by finished and running runs, a
// TriggerTemplate. The numbers and the JSON; no ResolutionRequest left
// behind, none created with --no-remote, no object changed.
func TestReportAgainstAPIServer(t *testing.T) {
	testenv.Require(t, "KUBEBUILDER_ASSETS", "the report's test needs kube-apiserver and etcd (hack/tools.sh envtest)")
	crds, err := testenv.TektonCRDs("testdata/report/triggertemplate-crd.yaml")
	require.NoError(t, err)
	env := &envtest.Environment{CRDs: crds, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	scheme, err := server.Scheme()
	require.NoError(t, err)
	require.NoError(t, rbacv1.AddToScheme(scheme))
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	create := func(obj client.Object) {
		t.Helper()
		require.NoError(t, admin.Create(ctx, obj), "%T %s", obj, obj.GetName())
	}
	createYAML := func(doc string, obj client.Object) client.Object {
		t.Helper()
		require.NoError(t, yaml.Unmarshal([]byte(doc), obj))
		create(obj)
		return obj
	}
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rep-a", Labels: map[string]string{"oci-transport.tekton.dev/enabled": "audit"}}})
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rep-b"}})
	createYAML(`
metadata: {name: build-and-test, namespace: rep-a}
spec:
  workspaces: [{name: shared}]
  tasks:
  - name: build
    taskRef: {name: make}
    workspaces: [{name: src, workspace: shared}]
  - name: test
    runAfter: [build]
    taskRef: {name: make}
    workspaces: [{name: src, workspace: shared}]
`, &v1.Pipeline{})
	createYAML(`
metadata: {name: make, namespace: rep-a}
spec:
  workspaces: [{name: src}]
  steps: [{name: make, image: busybox, script: "make -C $(workspaces.src.path)"}]
`, &v1.Task{})

	run := func(namespace, name, size, ref string, done corev1.ConditionStatus) *v1.PipelineRun {
		t.Helper()
		r := createYAML(`
metadata: {name: `+name+`, namespace: `+namespace+`}
spec:
  params: [{name: gitRevision, value: v1.2.3}]
  `+ref+`
  workspaces:
  - name: shared
    volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: `+size+`}}}}
  - name: signing
    secret: {secretName: signing}
`, &v1.PipelineRun{}).(*v1.PipelineRun)
		if done != "" {
			reason := map[corev1.ConditionStatus]string{corev1.ConditionTrue: "Succeeded", corev1.ConditionFalse: "Failed", corev1.ConditionUnknown: "Running"}[done]
			r.Status.StartTime = &metav1.Time{Time: time.Now()}
			r.Status.Status = duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: done, Reason: reason}}}
			require.NoError(t, admin.Status().Update(ctx, r))
		}
		return r
	}
	pvc := func(owner *v1.PipelineRun, name, size string) {
		t.Helper()
		create(&corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: owner.Namespace, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "tekton.dev/v1", Kind: "PipelineRun", Name: owner.Name, UID: owner.UID,
			}}},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
			},
		})
	}
	const byName = "pipelineRef: {name: build-and-test}"
	const byGit = `pipelineRef:
    resolver: git
    params:
    - {name: url, value: "https://example.com/acme/release.git"}
    - {name: revision, value: $(params.gitRevision)}
    - {name: pathInRepo, value: tekton/release-pipeline.yaml}`
	build1 := run("rep-a", "build-1", "5Gi", byName, corev1.ConditionTrue)
	pvc(build1, "pvc-build-1", "5Gi")
	build2 := run("rep-a", "build-2", "5Gi", byName, corev1.ConditionUnknown)
	pvc(build2, "pvc-build-2", "5Gi")
	missing := run("rep-b", "missing-1", "3Gi", "pipelineRef: {name: nowhere}", corev1.ConditionFalse)
	pvc(missing, "pvc-missing-1", "3Gi")
	run("rep-b", "release-1", "50Gi", byGit, "")
	createYAML(`
metadata: {name: scratch-1, namespace: rep-b}
spec:
  pipelineRef: {name: build-and-test}
  workspaces: [{name: shared, emptyDir: {}}]
`, &v1.PipelineRun{})
	tt := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal([]byte(`
apiVersion: triggers.tekton.dev/v1beta1
kind: TriggerTemplate
metadata: {name: build-on-push, namespace: rep-a}
spec:
  params: [{name: size, default: 20Gi}]
  resourcetemplates:
  - apiVersion: tekton.dev/v1
    kind: PipelineRun
    metadata: {generateName: build-}
    spec:
      pipelineRef: {name: build-and-test}
      workspaces:
      - name: shared
        volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: $(tt.params.size)}}}}
`), &tt.Object))
	create(tt)

	// The git resolver, as Tekton's would answer.
	var answers []resolvetest.Answer
	require.NoError(t, yaml.Unmarshal([]byte(`
- resolver: git
  params: {url: "https://example.com/acme/release.git", revision: v1.2.3, pathInRepo: tekton/release-pipeline.yaml}
  refSource: {uri: "git+https://example.com/acme/release.git", digest: {sha1: 0123456789abcdef0123456789abcdef01234567}, entryPoint: tekton/release-pipeline.yaml}
  object:
    apiVersion: tekton.dev/v1
    kind: Pipeline
    metadata: {name: release}
    spec:
      workspaces: [{name: shared}, {name: signing}]
      tasks:
      - name: clone
        workspaces: [{name: out, workspace: shared}]
        taskSpec:
          workspaces: [{name: out}]
          steps: [{name: clone, image: alpine/git, script: "git clone https://example.com/acme/app $(workspaces.out.path)"}]
      - name: publish
        runAfter: [clone]
        workspaces: [{name: src, workspace: shared}, {name: key, workspace: signing}]
        taskSpec:
          workspaces: [{name: src}, {name: key}]
          steps: [{name: publish, image: busybox, script: "ls $(workspaces.src.path)"}]
`), &answers))
	resolver := &resolvetest.Resolver{Client: admin, Answers: answers}
	go resolver.Run(ctx, 20*time.Millisecond)

	// A platform team's reader: what the report reads, and ResolutionRequests.
	user, err := env.AddUser(envtest.User{Name: "platform-team"}, cfg)
	require.NoError(t, err)
	create(&rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "oci-transport-report"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelineruns", "verificationpolicies"}, Verbs: []string{"list"}},
			{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelines", "tasks"}, Verbs: []string{"get"}},
			{APIGroups: []string{"triggers.tekton.dev"}, Resources: []string{"triggertemplates"}, Verbs: []string{"list"}},
			{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"list"}},
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}},
			{APIGroups: []string{"resolution.tekton.dev"}, Resources: []string{"resolutionrequests"}, Verbs: []string{"create", "get", "delete"}},
		},
	})
	create(&rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "oci-transport-report"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "oci-transport-report"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "platform-team"}},
	})
	userClient, err := client.New(user.Config(), client.Options{Scheme: scheme})
	require.NoError(t, err)
	err = userClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "rep-a"}})
	require.True(t, apierrors.IsForbidden(err), "the API server enforces RBAC: %v", err)
	kc, err := user.KubeConfig()
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, kc, 0o600))

	before := resourceVersions(ctx, t, admin)

	code, out, errOut := report(t, "", "--kubeconfig", kubeconfig, "-n", "rep-a,rep-b", "-o", "json")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "report: reading cluster ")
	var r Report
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	require.Empty(t, r.Notes, "everything was readable")
	require.Len(t, r.Items, 5)
	b1 := item(t, r, "PipelineRun", "rep-a", "build-1")
	require.Equal(t, verdictWouldConvert, b1.Verdict)
	require.Equal(t, "audit", b1.OptIn)
	require.Equal(t, "Succeeded", b1.Status)
	require.True(t, b1.Finished)
	require.Equal(t, []PVC{{Name: "pvc-build-1", Size: Storage{Quantity: "5Gi", Bytes: 5 << 30}, Phase: "Pending"}}, b1.PVCs)
	b2 := item(t, r, "PipelineRun", "rep-a", "build-2")
	require.Equal(t, "Running", b2.Status)
	require.False(t, b2.Finished)
	m1 := item(t, r, "PipelineRun", "rep-b", "missing-1")
	require.Equal(t, verdictWouldLeave, m1.Verdict)
	require.Equal(t, "ReferenceNotFound", m1.Reason)
	require.Equal(t, "no", m1.OptIn)
	rel := item(t, r, "PipelineRun", "rep-b", "release-1")
	require.Equal(t, verdictWouldConvert, rel.Verdict, rel.Message)
	require.Equal(t, []string{"clone"}, rel.Tasks[1].PullsFrom)
	ttItem := item(t, r, "TriggerTemplate", "rep-a", "build-on-push")
	require.Equal(t, verdictWouldConvert, ttItem.Verdict)
	require.Equal(t, "20Gi", ttItem.Requested.Quantity)
	require.Equal(t, "build-*", ttItem.Template.Run)

	s := r.Summary
	require.Equal(t, 5, s.PipelineRuns)
	require.Equal(t, 4, s.PipelineRunsWithTemplate)
	require.Equal(t, 1, s.TriggerTemplates)
	require.Equal(t, 1, s.TriggerTemplateRuns)
	require.Equal(t, 4, s.Verdicts[verdictWouldConvert].Count)
	require.Equal(t, "63Gi", s.Requested.Quantity, "5+5+3+50")
	require.Equal(t, "60Gi", s.WouldStopRequesting.Quantity, "all but missing-1")
	require.Equal(t, "20Gi", s.PerTriggeredRun.Quantity)
	require.Equal(t, Tally{Count: 2, Storage: Storage{Quantity: "8Gi", Bytes: 8 << 30}}, s.HeldByFinished, "build-1 and missing-1")
	require.Equal(t, Tally{Count: 1, Storage: Storage{Quantity: "5Gi", Bytes: 5 << 30}}, s.HeldByFinishedWouldConvert)
	require.Len(t, r.Pipelines, 3)

	seen := len(resolver.Seen())
	require.Equal(t, 1, seen, "one ResolutionRequest, for release-1's git reference")
	var rrs resolutionv1beta1.ResolutionRequestList
	require.NoError(t, admin.List(ctx, &rrs))
	require.Empty(t, rrs.Items, "the report deletes its ResolutionRequests before it exits")

	// --no-remote, every namespace, the table: no ResolutionRequest.
	code, out, errOut = report(t, "", "--kubeconfig", kubeconfig, "-A", "--no-remote")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "PipelineRun rep-b/release-1: needs-remote-resolution (opt-in: no)")
	require.Contains(t, out, "which --no-remote does not create")
	require.Contains(t, out, "PVCs finished PipelineRuns still hold: 2 (8Gi); of runs that would convert: 1 (5Gi).")
	require.Contains(t, out, "Conversion would stop requesting 10Gi of PVC storage for these PipelineRuns, and 20Gi for each firing")
	require.Equal(t, seen, len(resolver.Seen()), "--no-remote creates no ResolutionRequest")
	require.Empty(t, resolver.Errors())
	// The whole table, as golden files: the one read through the resolver
	// (rep-a and rep-b) and the JSON of the same read; the API server's
	// address (a free port) is the only part that changes between runs.
	server := strings.TrimSuffix(user.Config().Host, "/")
	for format, file := range map[string]string{"table": "cluster-want.txt", "json": "cluster-want.json"} {
		code, out, errOut = report(t, "", "--kubeconfig", kubeconfig, "-n", "rep-a,rep-b", "-o", format)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, server)
		out = strings.ReplaceAll(out, server, "https://<api-server>")
		golden.Check(t, filepath.Join("testdata", "report", file), []byte(out), "go test ./cmd/webhook -update")
	}

	require.Equal(t, before, resourceVersions(ctx, t, admin), "the report changed no object")
}

// resourceVersions are those of every run, PVC and TriggerTemplate.
func resourceVersions(ctx context.Context, t *testing.T, c client.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	var runs v1.PipelineRunList
	require.NoError(t, c.List(ctx, &runs))
	for _, r := range runs.Items {
		out["run/"+r.Namespace+"/"+r.Name] = r.ResourceVersion
	}
	var pvcs corev1.PersistentVolumeClaimList
	require.NoError(t, c.List(ctx, &pvcs))
	for _, p := range pvcs.Items {
		out["pvc/"+p.Namespace+"/"+p.Name] = p.ResourceVersion
	}
	tts := &unstructured.UnstructuredList{}
	tts.SetAPIVersion("triggers.tekton.dev/v1beta1")
	tts.SetKind("TriggerTemplateList")
	require.NoError(t, c.List(ctx, tts))
	for _, tt := range tts.Items {
		out["tt/"+tt.GetNamespace()+"/"+tt.GetName()] = tt.GetResourceVersion()
	}
	return out
}
