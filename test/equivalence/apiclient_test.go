package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRead(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want readArgs
		ok   bool
	}{
		{[]string{"-n", "eq-a", "get", "pipelinerun", "pvc"}, readArgs{ns: "eq-a", verb: "get", resource: "pipelinerun", name: "pvc"}, true},
		{[]string{"-n", "eq-a", "get", "taskruns", "-l", "tekton.dev/pipelineRun=oci"}, readArgs{ns: "eq-a", verb: "get", resource: "taskruns", selector: "tekton.dev/pipelineRun=oci"}, true},
		{[]string{"-n", "eq-a", "get", "pvc"}, readArgs{ns: "eq-a", verb: "get", resource: "pvc"}, true},
		{[]string{"-n", "eq-a", "logs", "p", "-c", "step-s"}, readArgs{ns: "eq-a", verb: "logs", name: "p", container: "step-s"}, true},
		// everything else stays kubectl's
		{[]string{"get", "pv", "x", "-o", "jsonpath={.spec.hostPath.path}"}, readArgs{}, false},
		{[]string{"-n", "eq-a", "get", "pods", "-l", "a=b", "-o", "name"}, readArgs{}, false},
		{[]string{"-n", "eq-a", "get", "pods", "--field-selector=status.phase=Running"}, readArgs{}, false},
		{[]string{"-n", "eq-a", "get", "deployment", "x"}, readArgs{}, false},
		{[]string{"-n", "eq-a", "logs", "deployment/zot"}, readArgs{}, false},
		{[]string{"logs", "p", "-c", "c"}, readArgs{}, false},
		{[]string{"-n", "eq-a", "delete", "pod", "x"}, readArgs{}, false},
		{[]string{"-n", "eq-a"}, readArgs{}, false},
	} {
		got, ok := parseRead(tc.args)
		require.Equal(t, tc.ok, ok, "%v", tc.args)
		if ok {
			require.Equal(t, tc.want, got, "%v", tc.args)
		}
	}
}
