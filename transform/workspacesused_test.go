package transform

import (
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
)

// workspaceRefSamples are strings Tekton's pattern reads in different ways.
var workspaceRefSamples = []string{
	"", "no reference", "$(workspaces.src.path)", "cd $(workspaces.src.path) && ls $(workspaces.out.bound)",
	`$(workspaces["src"].path)`, `$(workspaces['src'].path)`, `$(workspaces["a.b"])`, "$(workspaces.src)",
	"$(workspaces.a.b.c)", "$(workspaces.)", "$(workspaces)", "$(workspaces.src[*])", "$(workspaces.x.y)",
	"$(workspaces[\"q\"]) $(workspaces.r.path) $(workspaces.q.path)", "$$(workspaces.src.path)", "$(workspaces.src.path",
	"$(params.x) $(workspaces.w.volume)", "$(workspaces.src.path)$(workspaces.src.path)", "$(workspaces.ünï.path)",
}

func sampleTaskSpec(ss []string) v1.TaskSpec {
	at := func(i int) string { return ss[i%len(ss)] }
	return v1.TaskSpec{
		Steps: []v1.Step{
			{Script: at(0), Args: []string{at(1)}, Command: []string{at(2)}, WorkingDir: at(3),
				Env:    []corev1.EnvVar{{Name: "E", Value: at(4)}},
				Params: v1.Params{{Name: "p", Value: v1.ParamValue{Type: v1.ParamTypeString, StringVal: at(5), ArrayVal: []string{at(6)}, ObjectVal: map[string]string{"k": at(7)}}}}},
		},
		Sidecars:     []v1.Sidecar{{Script: at(8), Args: []string{at(9)}, Command: []string{at(10)}, WorkingDir: at(11), Env: []corev1.EnvVar{{Value: at(12)}}}},
		StepTemplate: &v1.StepTemplate{Args: []string{at(13)}, Command: []string{at(14)}, WorkingDir: at(15), Env: []corev1.EnvVar{{Value: at(16)}}},
	}
}

// sameAsTekton fails unless workspacesUsedByTask and Tekton's
// FindWorkspacesUsedByTask agree on ts (names, and whether it is an error).
func sameAsTekton(t *testing.T, ts v1.TaskSpec) {
	t.Helper()
	want, wantErr := workspace.FindWorkspacesUsedByTask(ts)
	got, err := workspacesUsedByTask(&ts)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, Tekton's %v", err, wantErr)
	}
	if err != nil {
		return // Tekton's error names whichever bad string it met first
	}
	if w := want.List(); len(w) != len(got) || (len(w) > 0 && !equalStrings(w, got)) {
		t.Fatalf("used %q, Tekton's %q", got, w)
	}
}

func equalStrings(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWorkspacesUsedByTask(t *testing.T) {
	for i := range workspaceRefSamples {
		// every sample in every field, alone and with the others
		for j := range 17 {
			ss := make([]string, 17)
			ss[j] = workspaceRefSamples[i]
			sameAsTekton(t, sampleTaskSpec(ss))
		}
		sameAsTekton(t, sampleTaskSpec(append(workspaceRefSamples[i:], workspaceRefSamples[:i]...)))
	}
	sameAsTekton(t, v1.TaskSpec{})
	// the error is Tekton's
	_, want := workspace.FindWorkspacesUsedByTask(sampleTaskSpec([]string{"$(workspaces.a.b.c)"}))
	_, got := workspacesUsedByTask(&v1.TaskSpec{Steps: []v1.Step{{Script: "$(workspaces.a.b.c)"}}})
	if got == nil || want == nil || got.Error() != want.Error() {
		t.Fatalf("error %v, Tekton's %v", got, want)
	}
}

func FuzzWorkspacesUsedByTask(f *testing.F) {
	for _, s := range workspaceRefSamples {
		f.Add(s, "$(workspaces.x.path)", "")
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		sameAsTekton(t, sampleTaskSpec([]string{a, b, c}))
	})
}
