// Package resolution is the one way a PipelineRun's references are resolved,
// for the webhook and for the offline `convert`: which references a run
// needs, Tekton's substitutions in resolver params, the references Tekton
// itself refuses, and the reasons a run is left unchanged. Only reading one
// reference differs, behind Fetcher: the API and ResolutionRequests in the
// webhook (webhook/resolve), the supplied files offline (transform/offline).
package resolution

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/params"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// Reason says why resolution failed; it becomes the run's skipped-reason.
type Reason string

const (
	ReasonTimeout     Reason = "ResolutionTimeout"
	ReasonFailed      Reason = "ResolutionFailed"
	ReasonNotFound    Reason = "ReferenceNotFound"
	ReasonUnsupported Reason = "UnsupportedReference"
	// ReasonDryRun: a dry-run admission must not create ResolutionRequests.
	ReasonDryRun Reason = "DryRunNeedsRemoteResolution"
)

// ErrNotFound is what a Fetcher wraps when a reference names no object.
// Resolve words a missing named object itself (see notFound).
var ErrNotFound = errors.New("not found")

// Error is a resolution failure with its Reason: the run is left unchanged.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fail returns an *Error.
func Fail(reason Reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Describe splits a resolution error into the reason and message a run left
// unchanged carries: the first failure's reason, and every failure without
// its reason prefix. ok is false when a failure is not a verdict on the run
// (offline: a bad input).
func Describe(err error) (reason Reason, message string, ok bool) {
	failures := []error{err}
	if joined, isJoin := err.(interface{ Unwrap() []error }); isJoin {
		failures = joined.Unwrap()
	}
	texts := make([]string, 0, len(failures))
	for _, f := range failures {
		var rerr *Error
		if !errors.As(f, &rerr) {
			return "", "", false
		}
		if reason == "" {
			reason = rerr.Reason
		}
		texts = append(texts, strings.Replace(f.Error(), string(rerr.Reason)+": ", "", 1))
	}
	return reason, strings.Join(texts, "; "), true
}

// clusterTaskKind is the taskRef kind Tekton v1.15 removed (its v1 types no
// longer name it).
const clusterTaskKind = "ClusterTask"

// Reference is one reference to read, after Tekton's substitutions.
type Reference struct {
	// Kind is "Task" or "Pipeline".
	Kind string
	// Name is the object's name: a plain reference's, or the cluster
	// resolver's `name` param.
	Name string
	// Namespace is where a plain or cluster-resolver reference is read (the
	// cluster resolver's `namespace` param, the run's by default).
	Namespace string
	// RunNamespace is the run's namespace (where a ResolutionRequest goes).
	RunNamespace string
	// Resolver is empty for a plain reference.
	Resolver string
	// Params are the resolver params after substitution.
	Params v1.Params
}

// Origin is where a fetched object came from, as its resolver says
// (Tekton's refSource): nothing for an object read by name.
type Origin struct {
	URI        string
	Digest     map[string]string
	EntryPoint string
}

// Fetcher reads one reference and returns the decoded *v1.Task or
// *v1.Pipeline. An *Error says why the run is left unchanged; any other
// error is the caller's to report.
type Fetcher interface {
	Fetch(ctx context.Context, ref Reference) (any, Origin, error)
}

// Resolve returns what transform needs for run: the pipeline spec when the
// run has a pipelineRef, and the specs of the tasks transform.TasksNeeded
// names. The tasks are fetched in parallel (one slow resolver should not add
// up with the others against a deadline); the error joins every failure in
// pipeline order, and the Resolved returned holds what did resolve.
func Resolve(ctx context.Context, run *v1.PipelineRun, f Fetcher) (transform.Resolved, error) {
	var resolved transform.Resolved
	spec := run.Spec.PipelineSpec
	if spec == nil {
		ref := run.Spec.PipelineRef
		if ref == nil {
			return resolved, Fail(ReasonUnsupported, "the run has neither pipelineRef nor pipelineSpec")
		}
		p, err := pipeline(ctx, run, ref, f)
		if err != nil {
			return resolved, fmt.Errorf("pipelineRef: %w", err)
		}
		resolved.Pipeline = p
		spec = &p.Spec
	}
	needed := transform.TasksNeeded(run, spec)
	if len(needed) == 0 {
		return resolved, nil
	}
	repl := replacements(run, spec)
	results := make([]*transform.ResolvedTask, len(needed))
	errs := make([]error, len(needed))
	var wg sync.WaitGroup
	for i, pt := range needed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = task(ctx, run, pt.TaskRef, repl, f)
		}()
	}
	wg.Wait()
	for i, pt := range needed {
		if errs[i] != nil {
			errs[i] = fmt.Errorf("task %q: %w", pt.Name, errs[i])
			continue
		}
		if resolved.Tasks == nil {
			resolved.Tasks = map[string]transform.ResolvedTask{}
		}
		resolved.Tasks[pt.Name] = *results[i]
	}
	return resolved, errors.Join(errs...)
}

// replacements are what Tekton substitutes into resolver params: the run's
// params, the pipeline's defaults (spec, when given), and the run's
// namespace and name (when it has one: a generateName is only a prefix).
func replacements(run *v1.PipelineRun, spec *v1.PipelineSpec) map[string]string {
	repl := params.Replacements(run, spec)
	if run.Namespace != "" {
		repl["context.pipelineRun.namespace"] = run.Namespace
	}
	if run.Name != "" {
		repl["context.pipelineRun.name"] = run.Name
	}
	return repl
}

func pipeline(ctx context.Context, run *v1.PipelineRun, ref *v1.PipelineRef, f Fetcher) (*transform.ResolvedPipeline, error) {
	if ref.APIVersion != "" {
		return nil, Fail(ReasonUnsupported, "pipelineRef with apiVersion %q is not a Tekton Pipeline", ref.APIVersion)
	}
	obj, src, err := fetch(ctx, run, "Pipeline", ref.Name, ref.ResolverRef, replacements(run, nil), f)
	if err != nil {
		return nil, err
	}
	p, ok := obj.(*v1.Pipeline)
	if !ok {
		return nil, Fail(ReasonFailed, "the resolved object is a %T, not a Pipeline", obj)
	}
	return &transform.ResolvedPipeline{Spec: p.Spec, Source: src, Meta: transform.MetaOf(p.ObjectMeta)}, nil
}

func task(ctx context.Context, run *v1.PipelineRun, ref *v1.TaskRef, repl map[string]string, f Fetcher) (*transform.ResolvedTask, error) {
	switch ref.Kind {
	case "", v1.NamespacedTaskKind:
	case clusterTaskKind:
		// Tekton v1.15 no longer runs ClusterTasks: the run fails there
		// whatever we do, and Tekton should say why, not us by inlining.
		return nil, Fail(ReasonUnsupported, "taskRef kind ClusterTask: Tekton no longer supports ClusterTasks and rejects the reference")
	default:
		return nil, Fail(ReasonUnsupported, "taskRef kind %q is not supported", ref.Kind)
	}
	obj, src, err := fetch(ctx, run, "Task", ref.Name, ref.ResolverRef, repl, f)
	if err != nil {
		return nil, err
	}
	t, ok := obj.(*v1.Task)
	if !ok {
		return nil, Fail(ReasonFailed, "the resolved object is a %T, not a Task", obj)
	}
	return &transform.ResolvedTask{Spec: t.Spec, Source: src, Meta: transform.MetaOf(t.ObjectMeta)}, nil
}

// fetch builds the Reference Tekton would resolve and reads it.
func fetch(ctx context.Context, run *v1.PipelineRun, kind, name string, rr v1.ResolverRef, repl map[string]string, f Fetcher) (any, transform.Source, error) {
	ref, err := reference(kind, name, rr, repl, run.Namespace)
	src := transform.Source{Kind: kind, Resolver: ref.Resolver, Params: params.Map(ref.Params)}
	if err != nil {
		return nil, src, err
	}
	if ref.Resolver == "" || ref.Resolver == "cluster" {
		src.Name = ref.Name
	}
	obj, origin, err := f.Fetch(ctx, ref)
	if err != nil {
		return nil, src, notFound(ref, err)
	}
	src.URI, src.Digest, src.EntryPoint = origin.URI, origin.Digest, origin.EntryPoint
	return obj, src, nil
}

// notFound words a missing object named by a plain or cluster-resolver
// reference once, whichever Fetcher looked (the API or the supplied files):
// the message becomes the run's skipped-reason, which must not depend on
// the path. A remote reference keeps the Fetcher's words: only the files
// can miss one (a remote resolver's "not found" is its own failure), and
// which file to supply is what the user needs to read.
func notFound(ref Reference, err error) error {
	if !errors.Is(err, ErrNotFound) || (ref.Resolver != "" && ref.Resolver != "cluster") {
		return err
	}
	name := ref.Name
	if ref.Namespace != "" {
		name = ref.Namespace + "/" + name
	}
	return Fail(ReasonNotFound, "%s %s not found", ref.Kind, name)
}

// reference substitutes the resolver params and reads the cluster
// resolver's own (kind, name, namespace) as Tekton's cluster resolver does.
func reference(kind, name string, rr v1.ResolverRef, repl map[string]string, runNamespace string) (Reference, error) {
	ref := Reference{Kind: kind, Name: name, Namespace: runNamespace, RunNamespace: runNamespace, Resolver: string(rr.Resolver)}
	if ref.Resolver == "" {
		if name == "" {
			return ref, Fail(ReasonUnsupported, "%s reference has neither name nor resolver", kind)
		}
		return ref, nil
	}
	substituted, err := params.Substitute(rr.Params, repl)
	if err != nil {
		return ref, Fail(ReasonUnsupported, "%s from resolver %q: %w", kind, ref.Resolver, err)
	}
	ref.Params, ref.Name = substituted, ""
	if ref.Resolver != "cluster" {
		return ref, nil
	}
	for _, p := range substituted {
		switch p.Name {
		case "kind":
			if !strings.EqualFold(p.Value.StringVal, kind) {
				return ref, Fail(ReasonUnsupported, "the cluster resolver is asked for a %q where Tekton expects a %s", p.Value.StringVal, kind)
			}
		case "name":
			ref.Name = p.Value.StringVal
		case "namespace":
			if p.Value.StringVal != "" {
				ref.Namespace = p.Value.StringVal
			}
		}
	}
	if ref.Name == "" {
		return ref, Fail(ReasonUnsupported, "%s from the cluster resolver has no name param", kind)
	}
	return ref, nil
}
