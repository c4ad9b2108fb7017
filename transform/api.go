// Package transform is the pure rewrite at the heart of tekton-oci-transport:
// given a PipelineRun, the Pipeline and Task specs it uses and options, it
// returns the PipelineRun that moves its volumeClaimTemplate workspaces through
// an OCI registry instead of a PVC, and a report of what it did and why.
//
// It has no Kubernetes client, no network and no clock, and never mutates its
// input: the caller (the webhook, the offline convert command) resolves every
// reference and passes the specs in Resolved.
package transform

import (
	"maps"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Domain is the prefix of every annotation, label, and the reserved prefix of
// every name the conversion injects (steps, params, volumes).
const (
	Domain = "oci-transport.tekton.dev"

	// EnabledLabel opts a PipelineRun (or its namespace) in.
	EnabledLabel = Domain + "/enabled"

	// AnnotationConverted marks a converted run; its value is the
	// comma-separated list of converted pipeline workspaces. Its presence makes
	// a second conversion a no-op.
	AnnotationConverted = Domain + "/converted-workspaces"
	// AnnotationRepository is the artifact repository pattern, with Tekton's
	// run-time variables still in it and <workspace> for the workspace name.
	AnnotationRepository = Domain + "/repository"
	// AnnotationSources records where each inlined spec came from (JSON).
	AnnotationSources = Domain + "/sources"
	// AnnotationTasks records, per converted task, what it pulls and pushes (JSON).
	AnnotationTasks = Domain + "/tasks"
	// AnnotationSkippedReason says why a run that opted in was left unchanged
	// (written by the webhook, which owns the admission outcome).
	AnnotationSkippedReason = Domain + "/skipped-reason"

	// ReservedPrefix starts every injected step, param and volume name.
	ReservedPrefix = "oci-transport-"
)

// Options are the installation's settings, the same for every run.
type Options struct {
	// Registry is host[:port] of the OCI registry the steps push to and pull from.
	Registry string
	// RepositoryPrefix is the path under the registry that every run's
	// repositories live under, e.g. "tekton-oci-transport".
	RepositoryPrefix string
	// PlainHTTP makes the steps talk HTTP to the registry (in-cluster zot).
	PlainHTTP bool
	// StepImage is the image of the injected steps.
	StepImage string
	// StepCommand is the step binary inside StepImage. Tekton cannot look up an
	// image's entrypoint without a registry it can read, so it is always explicit.
	StepCommand []string
	// StepArgs are extra flags passed to every pull and push (limits,
	// concurrency, docker config path...), before the per-step flags.
	StepArgs []string
	// StepResources are the computeResources of every pull and push step.
	// A request or limit left out is not set: the Task's stepTemplate, else
	// the namespace's LimitRange, decides it (docs/design.md, "Resources of
	// the injected steps").
	StepResources corev1.ResourceRequirements
	// ResultsBudget is what to do with a run in which a task that returns
	// results gets a smaller termination-message share from the injected
	// steps (docs/design.md, "Results and the termination-message budget"):
	// ResultsBudgetWarn (""; the default) converts it with a warning,
	// ResultsBudgetUnchanged leaves it unchanged.
	ResultsBudget string
	// RegistryTokenAudience, when set, gives every converted task a
	// projected ServiceAccount token for this audience, mounted into the
	// injected steps only, which trade it at the registry's token service
	// for access to their namespace's repositories (docs/security.md).
	RegistryTokenAudience string
	// RegistryTokenExpirySeconds is that token's lifetime (0: the default,
	// DefaultRegistryTokenExpirySeconds; at least 600).
	RegistryTokenExpirySeconds int64
}

// The ResultsBudget policies.
const (
	ResultsBudgetWarn      = "warn"
	ResultsBudgetUnchanged = "unchanged"
)

// Source says where an inlined spec came from, as the resolver reported it.
type Source struct {
	// Kind is "Pipeline" or "Task" (or ClusterTask, etc.).
	Kind string `json:"kind,omitempty"`
	// Name is the object's name when it was read by name from the API.
	Name string `json:"name,omitempty"`
	// Resolver is the Tekton remote resolver that served it (hub, git, bundles...).
	Resolver string `json:"resolver,omitempty"`
	// Params are the resolver params after substitution.
	Params map[string]string `json:"params,omitempty"`
	// URI, Digest and EntryPoint come from the resolver's refSource when given.
	URI        string            `json:"uri,omitempty"`
	Digest     map[string]string `json:"digest,omitempty"`
	EntryPoint string            `json:"entryPoint,omitempty"`
}

// ResolvedPipeline is a Pipeline spec a caller resolved from a pipelineRef.
type ResolvedPipeline struct {
	Spec   v1.PipelineSpec
	Source Source
	// Meta is the resolved object's name, labels and annotations: Tekton
	// labels a run with its Pipeline's name and copies the Pipeline's labels
	// and annotations onto it, which inlining must keep.
	Meta Meta
}

// ResolvedTask is a Task spec a caller resolved from a PipelineTask's taskRef.
type ResolvedTask struct {
	Spec   v1.TaskSpec
	Source Source
	// Meta is the resolved object's name, labels and annotations: Tekton
	// copies a Task's labels and annotations onto its TaskRuns and pods and
	// labels them tekton.dev/task, which inlining must keep.
	Meta Meta
}

// Meta is what Tekton propagates of a referenced object's metadata.
type Meta struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// MetaOf returns the propagated metadata of a resolved object.
func MetaOf(m metav1.ObjectMeta) Meta {
	return Meta{Name: m.Name, Labels: maps.Clone(m.Labels), Annotations: maps.Clone(m.Annotations)}
}

// Resolved carries what the run references. Pipeline is needed only when the
// run has a pipelineRef; Tasks, keyed by PipelineTask name (in tasks or
// finally), only for tasks with a taskRef that bind a converted workspace.
type Resolved struct {
	Pipeline *ResolvedPipeline
	Tasks    map[string]ResolvedTask
}

// Outcome is what the conversion did with a run.
type Outcome string

const (
	// Converted: the run was rewritten.
	Converted Outcome = "Converted"
	// NothingToConvert: the run binds no volumeClaimTemplate workspace.
	NothingToConvert Outcome = "NothingToConvert"
	// AlreadyConverted: the run is our own output; it is returned unchanged.
	AlreadyConverted Outcome = "AlreadyConverted"
	// Unchanged: the run cannot be converted faithfully (see Reason); it is
	// returned unchanged and still works on its PVC.
	Unchanged Outcome = "Unchanged"
)

// Reason is a machine-readable cause of an Unchanged outcome.
type Reason string

const (
	ReasonCustomTask       Reason = "CustomTaskBindsWorkspace"
	ReasonPipelineInPipe   Reason = "PipelineInPipelineBindsWorkspace"
	ReasonMissingPipeline  Reason = "PipelineSpecMissing"
	ReasonMissingTask      Reason = "TaskSpecMissing"
	ReasonReservedName     Reason = "ReservedNameInUse"
	ReasonInvalidPipeline  Reason = "InvalidPipeline"
	ReasonUnsupportedShape Reason = "UnsupportedWorkspaceUse"
	// ReasonNameCollision: two converted workspaces would share a repository.
	ReasonNameCollision Reason = "WorkspaceNameCollision"
	// ReasonInvalidReference: an artifact reference the steps would use is
	// not a valid OCI reference (the steps would exit at run time).
	ReasonInvalidReference Reason = "InvalidArtifactReference"
	// ReasonClaimReferenced: a task reads $(workspaces.<name>.claim) of a
	// converted workspace, which is "" on an emptyDir.
	ReasonClaimReferenced Reason = "WorkspaceClaimReferenced"
	// ReasonParamScope: a Task param cannot keep the value it has through
	// the reference once the Task is inlined.
	ReasonParamScope Reason = "ParamScopeNotPreserved"
	// ReasonResultsBudget: a task that returns results would get a smaller
	// termination-message share, and ResultsBudget is "unchanged".
	ReasonResultsBudget Reason = "ResultsBudgetReduced"
	// ReasonSidecarUsesWorkspace: a sidecar of a task that pulls a converted
	// workspace uses it; Tekton starts sidecars before any step, the pull
	// included, so the sidecar would see an empty workspace where on the PVC
	// it sees what the task's ancestors left.
	ReasonSidecarUsesWorkspace Reason = "SidecarUsesPulledWorkspace"
)

// TaskReport says what the conversion did to one PipelineTask.
type TaskReport struct {
	// Name of the PipelineTask.
	Name string `json:"name"`
	// Finally is true for a task in the pipeline's finally section.
	Finally bool `json:"finally,omitempty"`
	// Workspaces are the converted pipeline workspaces the task binds.
	Workspaces []string `json:"workspaces"`
	// PullsFrom lists, in pull order, the tasks whose deltas it applies.
	PullsFrom []string `json:"pullsFrom,omitempty"`
	// Optional lists the tasks of PullsFrom that Tekton may legitimately not
	// run to success (`when`, matrix or onError: continue on them or on an
	// ancestor): a missing delta of theirs is not an error. Any other missing
	// delta fails the pull. A finally task leaves it empty: its pull step
	// reads each producer's $(tasks.<name>.status) at run time instead.
	Optional []string `json:"optional,omitempty"`
	// Pushes is false when every binding is readOnly.
	Pushes bool `json:"pushes"`
	// Inlined is true when its taskRef was replaced by the resolved spec.
	Inlined bool `json:"inlined,omitempty"`
	// Declared are task workspaces the PipelineTask bound and its spec did
	// not declare: the conversion declared them, as Tekton does at run time.
	Declared []string `json:"declared,omitempty"`
	// Propagated are task workspaces its embedded spec used without binding
	// them: the conversion bound them by name, as Tekton does at run time.
	Propagated []string `json:"propagated,omitempty"`
}

// Report explains a conversion.
type Report struct {
	Outcome Outcome `json:"outcome"`
	// Reason and Message are set for Unchanged.
	Reason  Reason `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Workspaces are the converted pipeline workspaces, sorted.
	Workspaces []string `json:"workspaces,omitempty"`
	// Tasks are the converted tasks, in pipeline order (tasks, then finally).
	Tasks []TaskReport `json:"tasks,omitempty"`
	// Warnings are faithful-but-notable facts a user should see (admission
	// warnings in the webhook, stderr in convert).
	Warnings []string `json:"warnings,omitempty"`
}
