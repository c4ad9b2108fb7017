// Package decode reads Tekton objects from YAML or JSON documents in either
// tekton.dev/v1 or tekton.dev/v1beta1 and returns their v1 form, converting
// v1beta1 with Tekton's own conversion code, so the rest of the project only
// ever deals with v1.
package decode

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Group versions this package reads.
const (
	V1      = "tekton.dev/v1"
	V1beta1 = "tekton.dev/v1beta1"
)

// ErrUnsupportedKind is returned for a well-formed object that is not a
// PipelineRun, Pipeline or Task of a known Tekton version.
var ErrUnsupportedKind = errors.New("unsupported kind")

// TypeMeta reads only apiVersion and kind of a YAML or JSON document.
func TypeMeta(data []byte) (metav1.TypeMeta, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return tm, fmt.Errorf("not a YAML or JSON object: %w", err)
	}
	return tm, nil
}

// Object decodes one document into *v1.PipelineRun, *v1.Pipeline or *v1.Task.
func Object(data []byte) (runtime.Object, error) {
	tm, err := TypeMeta(data)
	if err != nil {
		return nil, err
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, fmt.Errorf("apiVersion and kind are required (got apiVersion %q, kind %q)", tm.APIVersion, tm.Kind)
	}
	switch tm.APIVersion {
	case V1:
		obj, err := newV1(tm.Kind)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(data, obj); err != nil {
			return nil, fmt.Errorf("decoding %s %s: %w", tm.APIVersion, tm.Kind, err)
		}
		obj.GetObjectKind().SetGroupVersionKind(v1.SchemeGroupVersion.WithKind(tm.Kind))
		return obj, nil
	case V1beta1:
		return fromV1beta1(tm.Kind, data)
	default:
		return nil, fmt.Errorf("%w: apiVersion %q kind %q (want %s or %s)", ErrUnsupportedKind, tm.APIVersion, tm.Kind, V1, V1beta1)
	}
}

func newV1(kind string) (runtime.Object, error) {
	switch kind {
	case "PipelineRun":
		return &v1.PipelineRun{}, nil
	case "Pipeline":
		return &v1.Pipeline{}, nil
	case "Task":
		return &v1.Task{}, nil
	}
	return nil, fmt.Errorf("%w: %s %q (want PipelineRun, Pipeline or Task)", ErrUnsupportedKind, V1, kind)
}

func fromV1beta1(kind string, data []byte) (runtime.Object, error) {
	ctx := context.Background()
	var (
		out  runtime.Object
		err  error
		kerr error
	)
	switch kind {
	case "PipelineRun":
		in, sink := &v1beta1.PipelineRun{}, &v1.PipelineRun{}
		if err = yaml.Unmarshal(data, in); err == nil {
			kerr = in.ConvertTo(ctx, sink)
		}
		out = sink
	case "Pipeline":
		in, sink := &v1beta1.Pipeline{}, &v1.Pipeline{}
		if err = yaml.Unmarshal(data, in); err == nil {
			kerr = in.ConvertTo(ctx, sink)
		}
		out = sink
	case "Task":
		in, sink := &v1beta1.Task{}, &v1.Task{}
		if err = yaml.Unmarshal(data, in); err == nil {
			kerr = in.ConvertTo(ctx, sink)
		}
		out = sink
	default:
		return nil, fmt.Errorf("%w: %s %q (want PipelineRun, Pipeline or Task)", ErrUnsupportedKind, V1beta1, kind)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %s %s: %w", V1beta1, kind, err)
	}
	if kerr != nil {
		return nil, fmt.Errorf("converting %s %s to v1: %w", V1beta1, kind, kerr)
	}
	out.GetObjectKind().SetGroupVersionKind(v1.SchemeGroupVersion.WithKind(kind))
	return out, nil
}
