package offline

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestLoadNumbersDocuments(t *testing.T) {
	docs, err := Load("x.yaml", strings.NewReader(`# only a comment
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: a}
---
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: b}
`))
	require.NoError(t, err)
	require.Len(t, docs, 2)
	require.Equal(t, 1, docs[0].Index)
	require.Equal(t, 2, docs[1].Index, "an empty document between two --- is dropped by the reader")
	require.Len(t, docs[0].Digest, 64)

	_, err = Load("bad.yaml", strings.NewReader("apiVersion: tekton.dev/v1\nkind: Task\n---\nkind: [\n"))
	require.ErrorContains(t, err, "bad.yaml: document 1: ")
}

func load(t *testing.T, name, content string) []Document {
	t.Helper()
	docs, err := Load(name, strings.NewReader(content))
	require.NoError(t, err)
	return docs
}

const runWithRefs = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: r}
spec:
  params: [{name: rev, value: v1.2.3}]
  pipelineRef:
    resolver: git
    params:
    - {name: pathInRepo, value: ci/pipeline.yaml}
    - {name: revision, value: $(params.rev)}
  workspaces: [{name: ws, volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce]}}}]
`

const pipeline = `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: whatever}
spec:
  params: [{name: rev}, {name: bundle, default: reg/tasks:1}]
  workspaces: [{name: ws}]
  tasks:
  - name: a
    taskRef: {resolver: bundles, params: [{name: bundle, value: $(params.bundle)}, {name: name, value: build}, {name: kind, value: task}]}
    workspaces: [{name: ws}]
  - name: b
    taskRef: {resolver: http, params: [{name: url, value: "https://example.com/tasks/test.yaml"}]}
    workspaces: [{name: ws}]
  - name: c
    taskRef: {name: unused-no-workspace}
`

const tasks = `apiVersion: tekton.dev/v1
kind: Task
metadata: {name: build}
spec:
  workspaces: [{name: ws}]
  steps: [{name: s, image: busybox, script: "true"}]
`

func TestResolveByNameAndByFileName(t *testing.T) {
	dir := "some/dir"
	docs := append(load(t, "run.yaml", runWithRefs), load(t, filepath.Join(dir, "pipeline.yaml"), pipeline)...)
	docs = append(docs, load(t, "tasks.yaml", tasks)...)
	docs = append(docs, load(t, "test.yaml", strings.Replace(tasks, "name: build", "name: any-name", 1))...)
	run := docs[0].Object.(*v1.PipelineRun)

	resolved, err := Resolve(run, docs)
	require.NoError(t, err)
	require.NotNil(t, resolved.Pipeline)
	require.Equal(t, "git", resolved.Pipeline.Source.Resolver)
	require.Equal(t, "v1.2.3", resolved.Pipeline.Source.Params["revision"], "run params are substituted")
	require.Equal(t, filepath.Join(dir, "pipeline.yaml"), resolved.Pipeline.Source.URI)
	require.Len(t, resolved.Pipeline.Source.Digest["sha256"], 64)

	require.Len(t, resolved.Tasks, 2, "only tasks that bind the converted workspace are resolved")
	require.Equal(t, "reg/tasks:1", resolved.Tasks["a"].Source.Params["bundle"], "pipeline defaults are substituted")
	require.Equal(t, "build", resolved.Tasks["a"].Source.Params["name"])
	require.Empty(t, resolved.Tasks["a"].Source.Name, "only objects read by name are named, as in the webhook")
	require.Equal(t, "test.yaml", resolved.Tasks["b"].Source.URI, "http refs match the file name at the end of the url")
}

func TestResolveReportsEveryMissingAndAmbiguousRef(t *testing.T) {
	docs := append(load(t, "run.yaml", runWithRefs), load(t, "pipeline.yaml", pipeline)...)
	docs = append(docs, load(t, "a.yaml", tasks)...)
	docs = append(docs, load(t, "b.yaml", tasks)...)
	run := docs[0].Object.(*v1.PipelineRun)
	resolved, err := Resolve(run, docs)
	require.ErrorContains(t, err, `task "a": Task "build" (resolver bundles): 2 supplied objects match (a.yaml document 0 and b.yaml document 0)`)
	require.ErrorContains(t, err, `task "b": ReferenceNotFound: `)
	require.ErrorIs(t, err, ErrNotFound)
	require.NotNil(t, resolved.Pipeline, "what resolved is returned")

	run.Spec.PipelineRef.Resolver = "oci-catalog"
	_, err = Resolve(run, docs)
	require.ErrorContains(t, err, `resolver "oci-catalog" cannot be resolved offline`)
}

func TestEncodeYAMLDropsRoundTripZerosButKeepsEmptyDir(t *testing.T) {
	docs := load(t, "r.yaml", "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata: {name: r}\nspec:\n  workspaces: [{name: ws, emptyDir: {}}]\n  pipelineSpec:\n    tasks: [{name: a, taskSpec: {steps: [{name: s, image: busybox}]}}]\n")
	out, err := EncodeYAML(docs[0].Object)
	require.NoError(t, err)
	s := string(out)
	require.Contains(t, s, "emptyDir: {}")
	for _, leak := range []string{"status", "taskRunTemplate", "computeResources", "metadata: {}", "spec: null", "creationTimestamp"} {
		require.NotContains(t, s, leak)
	}
}
