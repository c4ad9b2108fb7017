package resolvetest

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform/offline"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
)

// Files answers a ResolutionRequest with the document offline.Files (what
// `webhook convert` reads) matches to it, and the file and its sha256 as
// refSource, which is what convert records as the source: the webhook and
// convert then see the same object from the same place. A request no
// document answers (or two do) gets no answer, and fails as an unknown
// request does.
func Files(docs []offline.Document) func(*resolutionv1beta1.ResolutionRequest) *Answer {
	return func(rr *resolutionv1beta1.ResolutionRequest) *Answer {
		ref := reference(rr)
		// A request does not say what kind it wants, except to the cluster
		// resolver: the one kind that matches answers.
		var found *Answer
		for _, kind := range []string{"Task", "Pipeline"} {
			if ref.Resolver == "cluster" && !strings.EqualFold(ref.Kind, kind) {
				continue
			}
			ref.Kind = kind
			obj, origin, err := offline.Files(docs).Fetch(context.Background(), ref)
			if err != nil {
				continue
			}
			if found != nil {
				return nil
			}
			found = answer(ref.Resolver, kind, obj, origin)
		}
		return found
	}
}

// reference reads rr as package resolution builds a Reference; only the
// cluster resolver's name and namespace are read from its params.
func reference(rr *resolutionv1beta1.ResolutionRequest) resolution.Reference {
	ref := resolution.Reference{
		Resolver:     rr.Labels["resolution.tekton.dev/type"],
		Params:       rr.Spec.Params,
		Namespace:    rr.Namespace,
		RunNamespace: rr.Namespace,
	}
	for _, p := range rr.Spec.Params {
		switch p.Name {
		case "kind":
			ref.Kind = p.Value.StringVal
		case "name":
			ref.Name = p.Value.StringVal
		case "namespace":
			if p.Value.StringVal != "" && ref.Resolver == "cluster" {
				ref.Namespace = p.Value.StringVal
			}
		}
	}
	return ref
}

func answer(resolver, kind string, obj any, origin resolution.Origin) *Answer {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil
	}
	// The decoded object is v1 (converted from v1beta1 if need be) and may
	// not carry its type.
	m["apiVersion"], m["kind"] = v1.SchemeGroupVersion.String(), kind
	return &Answer{
		Resolver:  resolver,
		Object:    m,
		RefSource: &v1.RefSource{URI: origin.URI, Digest: origin.Digest, EntryPoint: origin.EntryPoint},
	}
}
