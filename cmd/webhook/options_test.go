package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func parseTransformFlags(t *testing.T, args ...string) corev1.ResourceRequirements {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	options := transformFlags(fs)
	require.NoError(t, fs.Parse(args))
	return options().StepResources
}

// One flag per request and limit; empty (the default) sets nothing.
func TestStepResourceFlags(t *testing.T) {
	require.Equal(t, corev1.ResourceRequirements{}, parseTransformFlags(t), "no flag, no resources")
	require.Equal(t, corev1.ResourceRequirements{}, parseTransformFlags(t,
		"--step-cpu-request=", "--step-memory-request=", "--step-cpu-limit=", "--step-memory-limit="), "empty values set nothing")

	got := parseTransformFlags(t, "--step-cpu-request=100m", "--step-memory-request=64Mi", "--step-memory-limit=128Mi", "--step-cpu-limit=")
	require.Equal(t, corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}, got)
	got = parseTransformFlags(t, "--step-cpu-limit=1", "--step-cpu-limit=") // the last one wins, as for every flag
	require.Nil(t, got.Limits)
}

// serve refuses what Kubernetes would refuse on every pod, before it
// reports ready (a usage error, exit 2).
func TestServeRejectsBadStepResources(t *testing.T) {
	for args, want := range map[string]string{
		"--step-cpu-request=lots":                               `invalid value "lots" for flag -step-cpu-request`,
		"--step-memory-limit=128MB":                             `invalid value "128MB" for flag -step-memory-limit`,
		"--step-memory-request=256Mi --step-memory-limit=128Mi": "step memory request 256Mi exceeds its limit 128Mi",
		"--step-cpu-request=2 --step-cpu-limit=500m":            "step cpu request 2 exceeds its limit 500m",
		"--step-memory-request=-64Mi":                           "step memory request -64Mi is negative",
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, 2, serve(strings.Split(args, " "), &out, &errOut), args)
		require.Contains(t, errOut.String(), want, args)
	}
}

// convert passes the flags to the rewrite: both injected steps declare them.
func TestConvertStepResources(t *testing.T) {
	var out, errOut bytes.Buffer
	code := runConvert([]string{"--step-cpu-request=250m", "--step-memory-request=64Mi", "--step-memory-limit=192Mi",
		"-f", "../../transform/testdata/linear/input.yaml"}, strings.NewReader(""), &out, &errOut)
	require.Equal(t, exitConverted, code, errOut.String())
	obj, err := decode.Object(out.Bytes())
	require.NoError(t, err)
	run := obj.(*v1.PipelineRun)
	injected := 0
	for _, pt := range run.Spec.PipelineSpec.Tasks {
		for _, s := range pt.TaskSpec.Steps {
			r := s.ComputeResources
			if !strings.HasPrefix(s.Name, "oci-transport-") {
				require.Empty(t, r.Requests, s.Name)
				require.Empty(t, r.Limits, s.Name)
				continue
			}
			injected++
			require.Equal(t, "250m", r.Requests.Cpu().String(), s.Name)
			require.Equal(t, "64Mi", r.Requests.Memory().String(), s.Name)
			require.Equal(t, "192Mi", r.Limits.Memory().String(), s.Name)
			require.NotContains(t, r.Limits, corev1.ResourceCPU, s.Name)
		}
	}
	require.Equal(t, 6, injected, "three pushes and three pulls")
}
