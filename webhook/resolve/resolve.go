// Package resolve finds the Pipeline and Task specs a PipelineRun references,
// the way Tekton does: plain references by name (and the cluster resolver for
// the run's own namespace) from the API through an informer cache, every other
// resolver through Tekton remote resolution (ResolutionRequest objects answered
// by the cluster's own resolvers, with their configuration), all within one
// deadline below the webhook timeout.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/params"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// Error is a resolution failure with its Reason.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func fail(reason Reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Resolver resolves references. The zero value is not usable: Cache, Client
// and Live are required.
type Resolver struct {
	// Cache reads Tasks and Pipelines by name (informer-backed, so repeated
	// admissions cost no API call).
	Cache client.Reader
	// Client creates and deletes ResolutionRequests.
	Client client.Client
	// Live reads ResolutionRequests directly from the API server; caching them
	// would mean watching every ResolutionRequest of the cluster.
	Live client.Reader
	// Timeout bounds a whole Resolve call.
	Timeout time.Duration
	// Observe, when set, is called once per reference resolved.
	Observe func(resolver string, took time.Duration, err error)
	Log     logr.Logger
}

// Resolve returns what transform needs for run: the pipeline spec when the run
// has a pipelineRef, and the specs of the tasks transform.TasksNeeded names.
// dryRun forbids creating ResolutionRequests.
func (r *Resolver) Resolve(ctx context.Context, run *v1.PipelineRun, dryRun bool) (transform.Resolved, error) {
	var resolved transform.Resolved
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	spec := run.Spec.PipelineSpec
	if spec == nil {
		ref := run.Spec.PipelineRef
		if ref == nil {
			return resolved, fail(ReasonUnsupported, "the run has neither pipelineRef nor pipelineSpec")
		}
		// A pipelineRef's resolver params may only use the run's params.
		p, err := r.pipeline(ctx, run, ref, params.Replacements(run, nil), dryRun)
		if err != nil {
			return resolved, err
		}
		resolved.Pipeline = p
		spec = &p.Spec
	}

	needed := transform.TasksNeeded(run, spec)
	if len(needed) == 0 {
		return resolved, nil
	}
	repl := params.Replacements(run, spec)
	resolved.Tasks = make(map[string]transform.ResolvedTask, len(needed))
	// In parallel: one slow resolver should not add up with the others
	// against the deadline. Errors are reported in pipeline order, so the
	// answer does not depend on which goroutine failed first.
	results := make([]*transform.ResolvedTask, len(needed))
	errs := make([]error, len(needed))
	var wg sync.WaitGroup
	for i, pt := range needed {
		if pt.TaskRef == nil || pt.TaskRef.APIVersion != "" {
			continue // custom tasks are transform's call (it leaves the run unchanged)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = r.task(ctx, run, pt.TaskRef, repl, dryRun)
		}()
	}
	wg.Wait()
	for i, pt := range needed {
		if errs[i] != nil {
			return transform.Resolved{}, fmt.Errorf("task %q: %w", pt.Name, errs[i])
		}
		if results[i] != nil {
			resolved.Tasks[pt.Name] = *results[i]
		}
	}
	return resolved, nil
}

func (r *Resolver) pipeline(ctx context.Context, run *v1.PipelineRun, ref *v1.PipelineRef, repl map[string]string, dryRun bool) (*transform.ResolvedPipeline, error) {
	if ref.APIVersion != "" {
		return nil, fail(ReasonUnsupported, "pipelineRef with apiVersion %q is not a Tekton Pipeline", ref.APIVersion)
	}
	var out transform.ResolvedPipeline
	err := r.one(ctx, run, "Pipeline", ref.Name, ref.ResolverRef, repl, dryRun, func(obj any, src transform.Source) error {
		p, ok := obj.(*v1.Pipeline)
		if !ok {
			return fmt.Errorf("resolved object is a %T, not a Pipeline", obj)
		}
		out = transform.ResolvedPipeline{Spec: p.Spec, Source: src, Meta: transform.MetaOf(p.ObjectMeta)}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pipelineRef: %w", err)
	}
	return &out, nil
}

func (r *Resolver) task(ctx context.Context, run *v1.PipelineRun, ref *v1.TaskRef, repl map[string]string, dryRun bool) (*transform.ResolvedTask, error) {
	if ref.Kind != "" && ref.Kind != v1.NamespacedTaskKind {
		return nil, fail(ReasonUnsupported, "taskRef kind %q is not supported", ref.Kind)
	}
	var out transform.ResolvedTask
	err := r.one(ctx, run, "Task", ref.Name, ref.ResolverRef, repl, dryRun, func(obj any, src transform.Source) error {
		t, ok := obj.(*v1.Task)
		if !ok {
			return fmt.Errorf("resolved object is a %T, not a Task", obj)
		}
		out = transform.ResolvedTask{Spec: t.Spec, Source: src, Meta: transform.MetaOf(t.ObjectMeta)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// one resolves a single reference of kind ("Task" or "Pipeline") and hands
// the decoded object to use.
func (r *Resolver) one(ctx context.Context, run *v1.PipelineRun, kind, name string, rr v1.ResolverRef, repl map[string]string, dryRun bool, use func(any, transform.Source) error) (err error) {
	start := time.Now()
	resolver := string(rr.Resolver)
	defer func() {
		if r.Observe != nil {
			label := resolver
			if label == "" {
				label = "name"
			}
			r.Observe(label, time.Since(start), err)
		}
	}()
	if resolver == "" {
		if name == "" {
			return fail(ReasonUnsupported, "%s reference has neither name nor resolver", kind)
		}
		obj, err := r.byName(ctx, kind, run.Namespace, name)
		if err != nil {
			return err
		}
		return use(obj, transform.Source{Kind: kind, Name: name})
	}
	substituted, err := params.Substitute(rr.Params, repl)
	if err != nil {
		return fail(ReasonUnsupported, "%s from resolver %q: %w", kind, resolver, err)
	}
	if ns, n, ok := sameNamespaceCluster(resolver, substituted, kind, run.Namespace); ok {
		// The cluster resolver reading the run's own namespace is served from
		// the cache. Other namespaces go through the real resolver, which
		// enforces its allowed/blocked namespaces configuration.
		obj, err := r.byName(ctx, kind, ns, n)
		if err != nil {
			return err
		}
		return use(obj, transform.Source{Kind: kind, Name: n, Resolver: resolver, Params: params.Map(substituted)})
	}
	if dryRun {
		return fail(ReasonDryRun, "%s from resolver %q needs a ResolutionRequest, which a dry run must not create", kind, resolver)
	}
	obj, src, err := r.remote(ctx, run.Namespace, resolver, substituted)
	if err != nil {
		return err
	}
	src.Kind = kind
	if err := use(obj, src); err != nil {
		return fail(ReasonFailed, "%s from resolver %q: %w", kind, resolver, err)
	}
	return nil
}

// sameNamespaceCluster recognises the cluster resolver asking for an object
// of the run's namespace (its params: kind, name, namespace).
func sameNamespaceCluster(resolver string, params v1.Params, kind, runNamespace string) (string, string, bool) {
	if resolver != "cluster" {
		return "", "", false
	}
	var k, name, ns string
	for _, p := range params {
		switch p.Name {
		case "kind":
			k = p.Value.StringVal
		case "name":
			name = p.Value.StringVal
		case "namespace":
			ns = p.Value.StringVal
		default:
			return "", "", false // a param we do not know: let the resolver decide
		}
	}
	if ns == "" {
		ns = runNamespace
	}
	if name == "" || ns != runNamespace || (k != "" && !equalFoldASCII(k, kind)) {
		return "", "", false
	}
	return ns, name, true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

func (r *Resolver) byName(ctx context.Context, kind, namespace, name string) (any, error) {
	var obj client.Object
	switch kind {
	case "Pipeline":
		obj = &v1.Pipeline{}
	default:
		obj = &v1.Task{}
	}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := r.Cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && r.Live != nil {
		// `kubectl apply -f task.yaml -f run.yaml` creates the run before the
		// informer has seen the Task: ask the API server before giving up.
		err = r.Live.Get(ctx, key, obj)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fail(ReasonNotFound, "%s %s/%s not found", kind, namespace, name)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fail(ReasonTimeout, "reading %s %s/%s: %w", kind, namespace, name, err)
		}
		return nil, fail(ReasonFailed, "reading %s %s/%s: %w", kind, namespace, name, err)
	}
	return obj, nil
}
