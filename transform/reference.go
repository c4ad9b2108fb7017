package transform

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"oras.land/oras-go/v2/registry"
)

// RepositoryComponent is the last path component of a workspace's artifact
// repository. Tekton accepts workspace names that an OCI repository cannot
// hold (`sharedData`, `src_dir`): those are lowercased, other characters
// become "-", and a short hash of the original name is appended (slug), so
// the component is valid and two workspaces do not share one. It is the same
// text as in the injected step names and the state directory.
func RepositoryComponent(workspace string) string {
	return slug(workspace, maxSlug)
}

// Stand-ins for what only exists when the run executes, each as long as the
// real value can be, so a reference that is valid here is valid then.
const (
	exampleUID = "00000000-0000-4000-8000-000000000000"
	// exampleTaskRun is a 63-character TaskRun name: a matrix instance's tag
	// is <task>.<taskrun name>.
	exampleTaskRun = "taskrun-name-of-the-longest-length-kubernetes-allows-0123456789"
	// exampleNamespace stands in when the run does not carry its namespace
	// (offline convert); namespaces are 63-character DNS labels at most.
	exampleNamespace = "namespace-of-the-longest-length-kubernetes-allows-0123456789abc"
)

// checkRepositories refuses a run whose converted workspaces would share a
// repository (ReasonNameCollision): their deltas would mix.
func checkRepositories(workspaces []string) error {
	owner := map[string]string{}
	for _, ws := range workspaces {
		c := RepositoryComponent(ws)
		if other, taken := owner[c]; taken {
			return refuse(ReasonNameCollision, "workspaces %q and %q would share the artifact repository component %q", other, ws, c)
		}
		owner[c] = ws
	}
	return nil
}

// checkReferences validates, with oras-go's own reference grammar (the one
// the injected steps parse with), every reference the steps of plans will
// push to or pull from, with the run-time variables replaced by values as
// long as they can be. A run whose references would be invalid is refused
// (ReasonInvalidReference): its steps would exit at run time, and a run we
// cannot convert must keep working on its PVC instead.
func checkReferences(namespace string, plans []*taskPlan, opts Options) error {
	if namespace == "" {
		namespace = exampleNamespace
	}
	repo := strings.NewReplacer(
		"$(context.pipelineRun.namespace)", namespace,
		"$(context.pipelineRun.uid)", exampleUID,
	).Replace(opts.repositoryParamValue())
	tags := map[string]bool{}
	for _, p := range plans {
		tags[strings.ReplaceAll(p.tag(), "$(context.taskRun.name)", exampleTaskRun)] = true
	}
	tagList := make([]string, 0, len(tags))
	for t := range tags {
		tagList = append(tagList, t)
	}
	sort.Strings(tagList)
	for _, ws := range workspacesOf(plans) {
		for _, tag := range tagList {
			ref := fmt.Sprintf("%s/%s/%s:%s", opts.Registry, repo, RepositoryComponent(ws), tag)
			if err := validReference(ref); err != nil {
				return refuse(ReasonInvalidReference, "workspace %q: artifact reference %q: %v", ws, ref, err)
			}
		}
	}
	return nil
}

// validReference parses ref as the steps will and checks its tag. The
// answers for valid references are remembered (oras parses with regular
// expressions, once per task and workspace of every admission), up to
// maxValidReferences of them.
func validReference(ref string) error {
	if _, ok := validReferences.Load(ref); ok {
		return nil
	}
	r, err := registry.ParseReference(ref)
	if err != nil {
		return err
	}
	if err := r.ValidateReferenceAsTag(); err != nil {
		return err
	}
	if validReferenceCount.Load() < maxValidReferences {
		if _, loaded := validReferences.LoadOrStore(ref, struct{}{}); !loaded {
			validReferenceCount.Add(1)
		}
	}
	return nil
}

const maxValidReferences = 4096

var (
	validReferences     sync.Map // string -> struct{}
	validReferenceCount atomic.Int64
)

// workspacesOf lists the converted workspaces that plans bind, sorted.
func workspacesOf(plans []*taskPlan) []string {
	set := map[string]bool{}
	for _, p := range plans {
		for _, ws := range p.workspaces {
			set[ws] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}
