package resolve

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	resolverconfig "github.com/tektoncd/pipeline/pkg/apis/config/resolver"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// LabelResolverType is the label Tekton's resolvers select their requests by.
	LabelResolverType = "resolution.tekton.dev/type"
	// LabelManagedBy marks the requests this webhook creates.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "tekton-oci-transport"

	firstPoll = 20 * time.Millisecond
	maxPoll   = 500 * time.Millisecond

	// DefaultPickupTimeout is how long a ResolutionRequest may go without
	// any condition before nobody is taken to be handling it (Resolver.PickupTimeout).
	DefaultPickupTimeout = 3 * time.Second
	// DefaultResolversNamespace is where Tekton installs its resolvers and
	// their feature flags (Resolver.ResolversNamespace).
	DefaultResolversNamespace = "tekton-pipelines-resolvers"
	// ResolversFeatureFlags is the ConfigMap that enables Tekton's own
	// resolvers, one enable-<name>-resolver key each (Tekton's resolvers
	// read another name when CONFIG_RESOLVERS_FEATURE_FLAGS_NAME says so).
	ResolversFeatureFlags = "resolvers-feature-flags"
)

// builtinResolvers are the resolvers Tekton ships, each turned on and off
// by its key in ResolversFeatureFlags (read with Tekton's own parser).
var builtinResolvers = map[string]struct {
	key string
	on  func(*resolverconfig.FeatureFlags) bool
}{
	"bundles": {resolverconfig.EnableBundlesResolver, func(f *resolverconfig.FeatureFlags) bool { return f.EnableBundleResolver }},
	"cluster": {resolverconfig.EnableClusterResolver, func(f *resolverconfig.FeatureFlags) bool { return f.EnableClusterResolver }},
	"git":     {resolverconfig.EnableGitResolver, func(f *resolverconfig.FeatureFlags) bool { return f.EnableGitResolver }},
	"hub":     {resolverconfig.EnableHubResolver, func(f *resolverconfig.FeatureFlags) bool { return f.EnableHubResolver }},
	"http":    {resolverconfig.EnableHttpResolver, func(f *resolverconfig.FeatureFlags) bool { return f.EnableHttpResolver }},
}

// disabled says which feature flag turns a resolver of Tekton's off in
// this cluster; "" when it is on, not one of Tekton's, or the flags cannot
// be read (no such ConfigMap, no permission to read it, a value Tekton
// cannot parse either): then the request is made and the resolver answers.
func (r *Resolver) disabled(ctx context.Context, resolver string) string {
	b, ok := builtinResolvers[resolver]
	if !ok {
		return ""
	}
	flags, where := r.featureFlags(ctx)
	if flags == nil || b.on(flags) {
		return ""
	}
	return fmt.Sprintf("ConfigMap %s has %s: %q", where, b.key, r.flagsData[b.key])
}

// featureFlagsTTL is how long the resolvers' feature flags read (or the
// failure to read them) are reused: one read per admission would double
// the API calls of a remote reference.
const featureFlagsTTL = 30 * time.Second

// featureFlags returns the resolvers' feature flags and where they are;
// nil flags when they cannot be read.
func (r *Resolver) featureFlags(ctx context.Context) (*resolverconfig.FeatureFlags, string) {
	ns := r.ResolversNamespace
	if ns == "" {
		ns = DefaultResolversNamespace
	}
	where := ns + "/" + ResolversFeatureFlags
	r.flagsMu.Lock()
	defer r.flagsMu.Unlock()
	if !r.flagsRead.IsZero() && time.Since(r.flagsRead) < featureFlagsTTL {
		return r.flags, where
	}
	var flags *resolverconfig.FeatureFlags
	cm := &corev1.ConfigMap{}
	err := r.Live.Get(ctx, types.NamespacedName{Namespace: ns, Name: ResolversFeatureFlags}, cm)
	if err == nil {
		flags, err = resolverconfig.NewFeatureFlagsFromMap(cm.Data)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, where // not worth remembering
		}
		r.Log.V(1).Info("reading the resolvers' feature flags failed; asking the resolvers", "configMap", where, "error", err.Error())
		flags = nil
	}
	r.flags, r.flagsData, r.flagsRead = flags, cm.Data, time.Now()
	return flags, where
}

// remote asks Tekton's resolver through a ResolutionRequest in namespace and
// waits for its answer until ctx ends. The request is deleted afterwards: it
// has no owner (the run does not exist yet), so nothing else would.
//
// It fails early in two cases: a resolver of Tekton's that the resolvers'
// feature flags turn off is not asked at all, and a request that no
// controller marks within the pickup timeout is abandoned: Tekton's
// pipelines controller marks every request "waiting for resolver" at once,
// and a resolver marks it when it answers, so a request with no condition
// at all has nobody handling it. (A request marked by Tekton that no
// resolver of its type serves still waits until ctx ends: nothing tells
// it from a slow resolver.)
func (r *Resolver) remote(ctx context.Context, namespace, resolver string, resolverParams v1.Params) (any, resolution.Origin, error) {
	var src resolution.Origin
	if why := r.disabled(ctx, resolver); why != "" {
		return nil, src, fail(ReasonFailed, "resolver %q is disabled in this cluster: %s", resolver, why)
	}
	pickup := r.PickupTimeout
	if pickup <= 0 {
		pickup = DefaultPickupTimeout
	}
	req := &resolutionv1beta1.ResolutionRequest{
		ObjectMeta: metav1.ObjectMeta{
			// A fresh name per admission: two replicas (or a reinvocation)
			// never share, and so never delete, each other's request.
			GenerateName: "oci-transport-" + resolver + "-",
			Namespace:    namespace,
			Labels:       map[string]string{LabelResolverType: resolver, LabelManagedBy: ManagedBy},
		},
		Spec: resolutionv1beta1.ResolutionRequestSpec{Params: resolverParams},
	}
	if err := r.Client.Create(ctx, req); err != nil {
		if ctx.Err() != nil {
			return nil, src, fail(ReasonTimeout, "creating ResolutionRequest for resolver %q: %w", resolver, err)
		}
		return nil, src, fail(ReasonFailed, "creating ResolutionRequest for resolver %q: %w", resolver, err)
	}
	defer r.cleanup(ctx, req)
	key := types.NamespacedName{Namespace: namespace, Name: req.Name}
	log := r.Log.WithValues("resolutionRequest", key.String(), "resolver", resolver)

	created, pickedUp := time.Now(), false
	wait := firstPoll
	for {
		got := &resolutionv1beta1.ResolutionRequest{}
		err := r.Live.Get(ctx, key, got)
		switch {
		case err == nil:
			if c := got.Status.GetCondition(apis.ConditionSucceeded); c != nil {
				pickedUp = true
				switch c.Status {
				case corev1.ConditionTrue:
					obj, err := decodeData(got.Status.Data)
					if err != nil {
						return nil, src, fail(ReasonFailed, "resolver %q answered: %w", resolver, err)
					}
					refSource := got.Status.RefSource
					if refSource == nil {
						refSource = got.Status.Source // resolvers before refSource existed
					}
					if refSource != nil {
						src = resolution.Origin{URI: refSource.URI, Digest: refSource.Digest, EntryPoint: refSource.EntryPoint}
					}
					log.V(1).Info("resolved")
					return obj, src, nil
				case corev1.ConditionFalse:
					return nil, src, fail(ReasonFailed, "resolver %q failed: %s: %s", resolver, c.Reason, c.Message)
				}
			}
		case ctx.Err() != nil:
		default:
			log.V(1).Info("reading ResolutionRequest failed; retrying", "error", err.Error())
		}
		if !pickedUp && time.Since(created) >= pickup {
			return nil, src, fail(ReasonTimeout, "no resolver answered ResolutionRequest %s for resolver %q within %s; is it enabled?", key, resolver, pickup)
		}
		select {
		case <-ctx.Done():
			return nil, src, fail(ReasonTimeout, "resolver %q did not answer in time: %w", resolver, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, maxPoll)
	}
}

// cleanup deletes a request in the background, outliving the admission's
// deadline so a timed-out request does not stay behind.
func (r *Resolver) cleanup(ctx context.Context, req *resolutionv1beta1.ResolutionRequest) {
	ctx = context.WithoutCancel(ctx)
	r.cleanups.Add(1)
	go func() {
		defer r.cleanups.Done()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := r.Client.Delete(ctx, req, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			r.Log.Error(err, "deleting ResolutionRequest", "resolutionRequest", req.Namespace+"/"+req.Name)
		}
	}()
}

// decodeData decodes status.data: base64 of one YAML or JSON document, a
// Task or Pipeline in tekton.dev/v1 or v1beta1.
func decodeData(data string) (any, error) {
	if data == "" {
		return nil, errors.New("empty data")
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("status.data is not base64: %w", err)
	}
	obj, err := decode.Object(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding resolved object: %w", err)
	}
	return obj, nil
}
