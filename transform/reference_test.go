package transform

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"oras.land/oras-go/v2/registry"
)

func TestRepositoryComponentIsAValidRepositoryPath(t *testing.T) {
	for _, ws := range []string{"workarea", "sharedData", "shared_data", "src.dir", "-x-", "ÄÖÜ", "a--b", "0ws",
		"a-very-long-workspace-name-that-goes-on-and-on-and-on-forever-and-ever"} {
		c := RepositoryComponent(ws)
		ref := registry.Reference{Registry: "r:5000", Repository: "p/ns/uid/" + c}
		require.NoError(t, ref.ValidateRepository(), "workspace %q -> %q", ws, c)
	}
	require.Equal(t, "workarea", RepositoryComponent("workarea"), "a valid name is kept as it is")
	require.NotEqual(t, RepositoryComponent("sharedData"), RepositoryComponent("shareddata"))
}

// runBinding is a run whose single task binds each of workspaces.
func runBinding(workspaces ...string) *v1.PipelineRun {
	run := &v1.PipelineRun{}
	run.Name, run.Namespace = "r", "team-a"
	task := v1.PipelineTask{Name: "build", TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{
		Steps: []v1.Step{{Name: "s", Image: "busybox"}},
	}}}
	spec := &v1.PipelineSpec{Tasks: []v1.PipelineTask{task, {
		Name: "test", RunAfter: []string{"build"},
		TaskSpec: &v1.EmbeddedTask{TaskSpec: v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox"}}}},
	}}}
	for _, ws := range workspaces {
		run.Spec.Workspaces = append(run.Spec.Workspaces, v1.WorkspaceBinding{Name: ws, VolumeClaimTemplate: &corev1.PersistentVolumeClaim{}})
		spec.Workspaces = append(spec.Workspaces, v1.PipelineWorkspaceDeclaration{Name: ws})
		for i := range spec.Tasks {
			pt := &spec.Tasks[i]
			pt.Workspaces = append(pt.Workspaces, v1.WorkspacePipelineTaskBinding{Name: ws})
			pt.TaskSpec.Workspaces = append(pt.TaskSpec.Workspaces, v1.WorkspaceDeclaration{Name: ws})
		}
	}
	run.Spec.PipelineSpec = spec
	return run
}

func testOpts() Options {
	return Options{Registry: "zot:5000", RepositoryPrefix: "tekton-oci-transport", StepImage: "img", StepCommand: []string{"/step"}}
}

func TestWorkspacesThatWouldShareARepositoryAreRefused(t *testing.T) {
	// "Foo" becomes foo-<hash of "Foo">; a workspace literally named so
	// would push into the same repository.
	clash := RepositoryComponent("Foo")
	_, report, err := PipelineRun(runBinding("Foo", clash), Resolved{}, testOpts())
	require.NoError(t, err)
	require.Equal(t, Unchanged, report.Outcome)
	require.Equal(t, ReasonNameCollision, report.Reason)

	_, report, err = PipelineRun(runBinding("Foo", "foo"), Resolved{}, testOpts())
	require.NoError(t, err)
	require.Equal(t, Converted, report.Outcome)
}

func TestAnInvalidArtifactReferenceLeavesTheRunUnchanged(t *testing.T) {
	opts := testOpts()
	opts.RepositoryPrefix = "Team/OCI" // uppercase: no OCI repository may hold it
	run := runBinding("source")
	out, report, err := PipelineRun(run, Resolved{}, opts)
	require.NoError(t, err)
	require.Equal(t, Unchanged, report.Outcome)
	require.Equal(t, ReasonInvalidReference, report.Reason)
	require.Contains(t, report.Message, `"zot:5000/Team/OCI/team-a/00000000-0000-4000-8000-000000000000/source:build"`)
	require.Equal(t, run, out, "unchanged means unchanged")

	opts.RepositoryPrefix = "team/oci"
	_, report, err = PipelineRun(run, Resolved{}, opts)
	require.NoError(t, err)
	require.Equal(t, Converted, report.Outcome)
}

func TestMatrixTagsStayWithinTheTagGrammar(t *testing.T) {
	// The longest task name and the longest TaskRun name still make a tag.
	p := &taskPlan{name: "a23456789-123456789-123456789-123456789-123456789-123456789-123", matrixed: true, workspaces: []string{"ws"}}
	require.NoError(t, checkReferences("", []*taskPlan{p}, testOpts()))
}
