package rawpatch

import (
	"encoding/json"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/require"
)

// apply applies ops to raw the way the API server does.
func apply(t *testing.T, raw []byte, ops any) string {
	t.Helper()
	data, err := json.Marshal(ops)
	require.NoError(t, err)
	p, err := jsonpatchapply.DecodePatch(data)
	require.NoError(t, err)
	out, err := p.Apply(raw)
	require.NoError(t, err)
	return string(out)
}

type step struct {
	Name  string            `json:"name,omitempty"`
	Image string            `json:"image,omitempty"`
	Res   struct{}          `json:"computeResources"`
	Env   map[string]string `json:"env"`
}

type obj struct {
	Meta struct {
		Name        string            `json:"name,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Created     *string           `json:"creationTimestamp"`
	} `json:"metadata"`
	Spec struct {
		Template struct {
			SA string `json:"serviceAccountName,omitempty"`
		} `json:"taskRunTemplate"`
		Steps      []step           `json:"steps,omitempty"`
		Workspaces []map[string]any `json:"workspaces,omitempty"`
	} `json:"spec"`
}

func TestPatchKeepsUnknownAndAddsNoArtefacts(t *testing.T) {
	raw := []byte(`{"metadata":{"name":"r","futureMeta":1},"spec":{"newTektonField":{"a":[1,2]},"steps":[{"name":"s","image":"busybox","futureStepField":true}],"workspaces":[{"name":"w","volumeClaimTemplate":{"spec":{}}}]}}`)
	var before obj
	require.NoError(t, json.Unmarshal(raw, &before))
	after := before
	after.Meta.Annotations = map[string]string{"x/y": "z"}
	after.Spec.Steps = append([]step{{Name: "pull", Image: "step"}}, before.Spec.Steps...)
	after.Spec.Steps = append(after.Spec.Steps, step{Name: "push", Image: "step"})
	after.Spec.Workspaces = []map[string]any{{"name": "w", "emptyDir": map[string]any{}}}

	ops, err := Patch(raw, before, after)
	require.NoError(t, err)
	require.JSONEq(t, `{"metadata":{"name":"r","futureMeta":1,"annotations":{"x/y":"z"}},"spec":{"newTektonField":{"a":[1,2]},
	  "steps":[{"name":"pull","image":"step"},{"name":"s","image":"busybox","futureStepField":true},{"name":"push","image":"step"}],
	  "workspaces":[{"name":"w","emptyDir":{}}]}}`, apply(t, raw, ops))
}

func TestPatchNoChangeIsEmpty(t *testing.T) {
	raw := []byte(`{"metadata":{"name":"r"},"spec":{"unknown":true}}`)
	var before obj
	require.NoError(t, json.Unmarshal(raw, &before))
	ops, err := Patch(raw, before, before)
	require.NoError(t, err)
	require.Empty(t, ops)
}

func TestMergeUnnamedListsByEquality(t *testing.T) {
	raw := []any{map[string]any{"image": "a", "x": 1.0}, map[string]any{"image": "b"}}
	before := []any{map[string]any{"image": "a"}, map[string]any{"image": "b"}}
	after := []any{map[string]any{"image": "pull"}, map[string]any{"image": "a"}, map[string]any{"image": "b"}}
	got, ok := Merge(raw, true, before, after)
	require.True(t, ok)
	require.Equal(t, []any{map[string]any{"image": "pull"}, map[string]any{"image": "a", "x": 1.0}, map[string]any{"image": "b"}}, got)
}

func TestMergeRemovesKeys(t *testing.T) {
	raw := map[string]any{"pipelineRef": map[string]any{"name": "p", "future": 1.0}, "keep": 1.0}
	before := map[string]any{"pipelineRef": map[string]any{"name": "p"}, "taskRunTemplate": map[string]any{}}
	after := map[string]any{"pipelineSpec": map[string]any{"tasks": []any{map[string]any{"name": "t", "metadata": map[string]any{}}}}, "taskRunTemplate": map[string]any{}}
	got, ok := Merge(raw, true, before, after)
	require.True(t, ok)
	require.Equal(t, map[string]any{"keep": 1.0, "pipelineSpec": map[string]any{"tasks": []any{map[string]any{"name": "t"}}}}, got)
}
