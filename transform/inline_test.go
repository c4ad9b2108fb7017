package transform

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

func TestScopeParams(t *testing.T) {
	str := func(s string) *v1.ParamValue { return v1.NewStructuredValues(s) }
	pt := &v1.PipelineTask{Name: "build", Params: v1.Params{{Name: "passed", Value: *str("x")}}}
	spec := &v1.TaskSpec{Params: v1.ParamSpecs{
		{Name: "passed", Default: str("d")},       // the PipelineTask's own value wins anyway
		{Name: "shadowed", Default: str("quiet")}, // a pipeline param of this name would win once inlined
		{Name: "alone", Default: str("a")},        // no pipeline param of this name
	}}
	pipeline := map[string]bool{"passed": true, "shadowed": true}
	add, err := scopeParams(pt, spec, pipeline)
	require.NoError(t, err)
	require.Equal(t, []v1.Param{{Name: "shadowed", Value: *str("quiet")}}, add)

	var u *unconvertible
	spec.Params = append(spec.Params, v1.ParamSpec{Name: "required"})
	_, err = scopeParams(pt, spec, map[string]bool{"required": true})
	require.True(t, errors.As(err, &u))
	require.Equal(t, ReasonParamScope, u.reason)

	spec.Params = v1.ParamSpecs{{Name: "ref", Default: str("$(params.other)")}}
	_, err = scopeParams(pt, spec, map[string]bool{"ref": true})
	require.True(t, errors.As(err, &u))
	require.Equal(t, ReasonParamScope, u.reason)
}

func TestWithTaskName(t *testing.T) {
	spec := v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox", Script: "echo $(context.task.name) $(context.taskRun.name)"}}}
	got, err := withTaskName(spec, "go-build")
	require.NoError(t, err)
	require.Equal(t, "echo go-build $(context.taskRun.name)", got.Steps[0].Script)
	require.Equal(t, "echo $(context.task.name) $(context.taskRun.name)", spec.Steps[0].Script, "the input is not changed")
}

func TestTaskMetadataDropsLastApplied(t *testing.T) {
	md := taskMetadata(Meta{Name: "t", Labels: map[string]string{"a": "1"}, Annotations: map[string]string{lastApplied: "{}"}})
	require.Equal(t, map[string]string{"a": "1", "tekton.dev/task": "t"}, md.Labels)
	require.Nil(t, md.Annotations)
}
