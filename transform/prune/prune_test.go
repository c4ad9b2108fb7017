package prune

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValue(t *testing.T) {
	var in any
	require.NoError(t, json.Unmarshal([]byte(`{
		"metadata": {"creationTimestamp": null},
		"status": {},
		"spec": {
			"taskRunTemplate": {},
			"workspaces": [{"name": "ws", "emptyDir": {}}, {}],
			"params": [{"name": "o", "value": {}}],
			"pipelineSpec": {"tasks": [{"name": "a", "taskSpec": {
				"metadata": {},
				"spec": null,
				"params": [
					{"name": "git", "type": "object", "properties": {"url": {}, "revision": {"type": "string"}}, "default": {}},
					{"name": "extra", "type": "object", "properties": {}}
				],
				"steps": [{"name": "s", "computeResources": {}}]
			}}]}
		}
	}`), &in))
	before, _ := json.Marshal(in)
	got, ok := Value("", in)
	require.True(t, ok)
	after, _ := json.Marshal(in)
	require.JSONEq(t, string(before), string(after), "the input is not changed")
	out, _ := json.Marshal(got)
	require.JSONEq(t, `{
		"spec": {
			"workspaces": [{"name": "ws", "emptyDir": {}}, {}],
			"params": [{"name": "o", "value": {}}],
			"pipelineSpec": {"tasks": [{"name": "a", "taskSpec": {
				"params": [
					{"name": "git", "type": "object", "properties": {"url": {}, "revision": {"type": "string"}}, "default": {}},
					{"name": "extra", "type": "object", "properties": {}}
				],
				"steps": [{"name": "s"}]
			}}]}
		}
	}`, string(out))
}

func TestGenericRestoresEmptyProperties(t *testing.T) {
	type paramSpec struct {
		Name       string              `json:"name"`
		Type       string              `json:"type,omitempty"`
		Properties map[string]struct{} `json:"properties,omitempty"`
	}
	type spec struct {
		Params []paramSpec `json:"params"`
	}
	got, err := Generic(spec{Params: []paramSpec{
		{Name: "labels", Type: "object", Properties: map[string]struct{}{}},
		{Name: "revision", Type: "string"},
	}})
	require.NoError(t, err)
	out, _ := json.Marshal(got)
	require.JSONEq(t, `{"params": [{"name": "labels", "type": "object", "properties": {}}, {"name": "revision", "type": "string"}]}`, string(out))
}
