package main

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The probe runs the steps the webhook wrote, only pointed elsewhere: found
// in a converted run (a golden output of transform), with every argument
// kept but the repository, the tree, the state and the tag.
func TestProbeRunsTheInjectedSteps(t *testing.T) {
	docs, err := readDocs([]string{"../../transform/testdata/linear/want.yaml"})
	require.NoError(t, err)
	pull, push, token, err := injectedSteps(docs[0], "source")
	require.NoError(t, err)
	require.Equal(t, "oci-transport-registry-token", s(token, "name"))
	require.NotEmpty(t, m(token, "projected"), "the projected token volume, audience and expiry as the webhook wrote them")

	const repo = "tekton-oci-transport/victim/uid/source"
	got := asIntruder(pull, repo, "")
	require.Equal(t, "pull", got[0])
	for flag, want := range map[string]string{"--repository": repo, "--mount": "/tree", "--state": "/state/pull", "--registry-token-file": "/oci-transport/registry-token/token"} {
		i := slices.Index(got, flag)
		require.GreaterOrEqual(t, i, 0, flag)
		require.Equal(t, want, got[i+1], flag)
	}
	require.Contains(t, got, "--from", "the pull keeps its ancestors' tags")
	require.Equal(t, len(pull.Args), len(got), "no argument added or dropped")

	got = asIntruder(push, repo, "intruder")
	require.Equal(t, "intruder", got[slices.Index(got, "--tag")+1])
	require.Equal(t, "/state/push", got[slices.Index(got, "--state")+1])

	_, _, _, err = injectedSteps(docs[0], "no-such-workspace")
	require.Error(t, err)
}
