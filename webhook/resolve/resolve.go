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
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	resolverconfig "github.com/tektoncd/pipeline/pkg/apis/config/resolver"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The reasons and error of package resolution, which both the webhook and
// the offline convert resolve through.
type (
	Reason = resolution.Reason
	Error  = resolution.Error
)

const (
	ReasonTimeout     = resolution.ReasonTimeout
	ReasonFailed      = resolution.ReasonFailed
	ReasonNotFound    = resolution.ReasonNotFound
	ReasonUnsupported = resolution.ReasonUnsupported
	ReasonDryRun      = resolution.ReasonDryRun
)

var fail = resolution.Fail

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
	// PickupTimeout bounds the wait for a ResolutionRequest to get any
	// condition (Tekton's controller marks it at once): past it, no
	// controller runs and the reference fails (ResolutionTimeout) instead
	// of holding admission until Timeout. 0 = DefaultPickupTimeout.
	PickupTimeout time.Duration
	// ResolversNamespace holds Tekton's resolvers-feature-flags, read
	// through Live: a resolver of Tekton's turned off there fails at once
	// (ResolutionFailed) without a request. "" = DefaultResolversNamespace.
	ResolversNamespace string
	// Observe, when set, is called once per reference resolved.
	Observe func(resolver string, took time.Duration, err error)
	Log     logr.Logger

	// cleanups are the ResolutionRequest deletions still running (Wait).
	cleanups sync.WaitGroup

	// the resolvers' feature flags last read, and when (featureFlags)
	flagsMu   sync.Mutex
	flags     *resolverconfig.FeatureFlags
	flagsData map[string]string
	flagsRead time.Time
}

// Wait returns once the ResolutionRequests created so far are deleted (or
// their deletion gave up): a command that exits after resolving calls it so
// that it leaves none behind.
func (r *Resolver) Wait() {
	r.cleanups.Wait()
}

// Resolve returns what transform needs for run (package resolution decides
// what and how; this package reads). dryRun forbids creating
// ResolutionRequests.
func (r *Resolver) Resolve(ctx context.Context, run *v1.PipelineRun, dryRun bool) (transform.Resolved, error) {
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	return resolution.Resolve(ctx, run, fetcher{r: r, dryRun: dryRun})
}

// fetcher reads one reference from the API: by name (and the cluster
// resolver for the run's own namespace) from the cache, everything else
// through a ResolutionRequest.
type fetcher struct {
	r      *Resolver
	dryRun bool
}

func (f fetcher) Fetch(ctx context.Context, ref resolution.Reference) (obj any, origin resolution.Origin, err error) {
	start := time.Now()
	defer func() {
		if f.r.Observe != nil {
			label := ref.Resolver
			if label == "" {
				label = "name"
			}
			f.r.Observe(label, time.Since(start), err)
		}
	}()
	if ref.Resolver == "" || sameNamespaceCluster(ref) {
		// The cluster resolver reading the run's own namespace is served
		// from the cache. Other namespaces go through the real resolver,
		// which enforces its allowed/blocked namespaces configuration.
		obj, err := f.r.byName(ctx, ref.Kind, ref.Namespace, ref.Name)
		return obj, origin, err
	}
	if f.dryRun {
		return nil, origin, fail(ReasonDryRun, "%s from resolver %q needs a ResolutionRequest, which a dry run must not create", ref.Kind, ref.Resolver)
	}
	return f.r.remote(ctx, ref.RunNamespace, ref.Resolver, ref.Params)
}

// sameNamespaceCluster recognises the cluster resolver asking for an object
// of the run's namespace with only the params it is known to take.
func sameNamespaceCluster(ref resolution.Reference) bool {
	if ref.Resolver != "cluster" || ref.Namespace != ref.RunNamespace {
		return false
	}
	for _, p := range ref.Params {
		switch p.Name {
		case "kind", "name", "namespace":
		default:
			return false // a param we do not know: let the resolver decide
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
			return nil, fail(ReasonNotFound, "%s %s/%s: %w", kind, namespace, name, resolution.ErrNotFound)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fail(ReasonTimeout, "reading %s %s/%s: %w", kind, namespace, name, err)
		}
		return nil, fail(ReasonFailed, "reading %s %s/%s: %w", kind, namespace, name, err)
	}
	return obj, nil
}
