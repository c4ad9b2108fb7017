// Package resolvetest stands in for Tekton's remote resolvers in tests: it
// answers ResolutionRequests from fixture files the way Tekton's resolver
// framework does (status.data is the base64 document, status.refSource says
// where it came from, condition Succeeded says how it went).
package resolvetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Answer is what a resolver returns for requests with these params.
type Answer struct {
	Resolver string            `json:"resolver"`
	Params   map[string]string `json:"params"`
	// Object is the Task or Pipeline document (any version) returned as data.
	Object map[string]any `json:"object,omitempty"`
	// RefSource is reported as status.refSource.
	RefSource *v1.RefSource `json:"refSource,omitempty"`
	// Fail answers with Succeeded=False and this message.
	Fail string `json:"fail,omitempty"`
	// Never leaves the request unanswered (a slow or absent resolver).
	Never bool `json:"never,omitempty"`
}

// Load reads a YAML list of answers.
func Load(path string) ([]Answer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading answers: %w", err)
	}
	var out []Answer
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decoding answers %s: %w", path, err)
	}
	return out, nil
}

// Resolver answers requests; Seen lists every request it saw.
type Resolver struct {
	Client  client.Client
	Answers []Answer
	// Lookup, when set, answers instead of Answers (Files answers from the
	// files `convert` reads).
	Lookup func(*resolutionv1beta1.ResolutionRequest) *Answer
	// Types, when set, are the only resolver types it answers for (the
	// resolution.tekton.dev/type label, which a Tekton resolver selects
	// its requests by): a request of another type gets no answer, as from
	// a resolver the cluster does not run. nil answers every type.
	Types []string
	// Controller stands in for Tekton's pipelines controller too: it marks
	// every request in progress ("waiting for resolver") first, whether a
	// resolver of its type runs or not.
	Controller bool

	mu   sync.Mutex
	seen []resolutionv1beta1.ResolutionRequest
	errs []error
}

// Errors returns what went wrong answering requests (for test failures).
func (r *Resolver) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// Seen returns the requests answered (or ignored) so far.
func (r *Resolver) Seen() []resolutionv1beta1.ResolutionRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]resolutionv1beta1.ResolutionRequest(nil), r.seen...)
}

// Run answers requests every interval until ctx ends.
func (r *Resolver) Run(ctx context.Context, interval time.Duration) {
	done := map[string]bool{}
	for {
		var list resolutionv1beta1.ResolutionRequestList
		if err := r.Client.List(ctx, &list); err == nil {
			for i := range list.Items {
				rr := &list.Items[i]
				key := rr.Namespace + "/" + rr.Name
				c := rr.Status.GetCondition(apis.ConditionSucceeded)
				if done[key] || c != nil && c.Status != corev1.ConditionUnknown {
					continue
				}
				if r.Controller && c == nil {
					if err := r.markInProgress(ctx, rr); err != nil {
						r.mu.Lock()
						r.errs = append(r.errs, err)
						r.mu.Unlock()
						continue
					}
				}
				if !r.serves(rr.Labels["resolution.tekton.dev/type"]) {
					continue
				}
				done[key] = true
				r.mu.Lock()
				r.seen = append(r.seen, *rr.DeepCopy())
				r.mu.Unlock()
				if err := r.answer(ctx, rr); err != nil {
					r.mu.Lock()
					r.errs = append(r.errs, err)
					r.mu.Unlock()
					delete(done, key)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// serves reports whether a resolver of this type runs.
func (r *Resolver) serves(resolverType string) bool {
	return r.Types == nil || slices.Contains(r.Types, resolverType)
}

// markInProgress does what Tekton's pipelines controller does to a new
// request.
func (r *Resolver) markInProgress(ctx context.Context, rr *resolutionv1beta1.ResolutionRequest) error {
	rr.Status.MarkInProgress("waiting for resolver")
	if rr.Status.RefSource == nil {
		rr.Status.RefSource = &v1.RefSource{} // the CRD requires it
	}
	if rr.Status.Source == nil {
		rr.Status.Source = rr.Status.RefSource
	}
	if err := r.Client.Status().Update(ctx, rr); err != nil {
		return fmt.Errorf("marking %s in progress: %w", rr.Name, err)
	}
	return nil
}

func (r *Resolver) answer(ctx context.Context, rr *resolutionv1beta1.ResolutionRequest) error {
	a := r.find(rr)
	cond := apis.Condition{Type: apis.ConditionSucceeded, LastTransitionTime: apis.VolatileTime{Inner: metav1.Now()}}
	switch {
	case a == nil:
		cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, "ResolutionFailed", "no fixture answers these params"
	case a.Never:
		return nil
	case a.Fail != "":
		cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, "ResolutionFailed", a.Fail
	default:
		data, err := yaml.Marshal(a.Object)
		if err != nil {
			return fmt.Errorf("encoding fixture: %w", err)
		}
		rr.Status.Data = base64.StdEncoding.EncodeToString(data)
		rr.Status.RefSource = a.RefSource
		cond.Status = corev1.ConditionTrue
	}
	// Tekton's resolvers fill the deprecated source too, and the CRD
	// requires it.
	rr.Status.Source = rr.Status.RefSource
	if rr.Status.Source == nil {
		rr.Status.Source = &v1.RefSource{}
	}
	rr.Status.Conditions = duckv1.Conditions{cond} // in place of "in progress"
	if err := r.Client.Status().Update(ctx, rr); err != nil {
		return fmt.Errorf("answering %s: %w", rr.Name, err)
	}
	return nil
}

func (r *Resolver) find(rr *resolutionv1beta1.ResolutionRequest) *Answer {
	if r.Lookup != nil {
		return r.Lookup(rr)
	}
	got := map[string]string{}
	for _, p := range rr.Spec.Params {
		got[p.Name] = p.Value.StringVal
	}
	for i := range r.Answers {
		a := &r.Answers[i]
		if a.Resolver == rr.Labels["resolution.tekton.dev/type"] && maps.Equal(a.Params, got) {
			return a
		}
	}
	return nil
}
