package resolve

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
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
)

// remote asks Tekton's resolver through a ResolutionRequest in namespace and
// waits for its answer until ctx ends. The request is deleted afterwards: it
// has no owner (the run does not exist yet), so nothing else would.
func (r *Resolver) remote(ctx context.Context, namespace, resolver string, resolverParams v1.Params) (any, resolution.Origin, error) {
	var src resolution.Origin
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

	wait := firstPoll
	for {
		got := &resolutionv1beta1.ResolutionRequest{}
		err := r.Live.Get(ctx, key, got)
		switch {
		case err == nil:
			if c := got.Status.GetCondition(apis.ConditionSucceeded); c != nil {
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
