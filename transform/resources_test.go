package transform

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// resources builds requirements from "name=quantity" pairs; nil lists for none.
func resources(requests, limits map[corev1.ResourceName]string) corev1.ResourceRequirements {
	list := func(m map[corev1.ResourceName]string) corev1.ResourceList {
		if m == nil {
			return nil
		}
		l := corev1.ResourceList{}
		for k, v := range m {
			l[k] = resource.MustParse(v)
		}
		return l
	}
	return corev1.ResourceRequirements{Requests: list(requests), Limits: list(limits)}
}

const (
	cpu = corev1.ResourceCPU
	mem = corev1.ResourceMemory
)

// chartDefaults are the chart's default step resources.
var chartDefaults = resources(map[corev1.ResourceName]string{cpu: "100m", mem: "64Mi"}, map[corev1.ResourceName]string{mem: "128Mi"})

func TestStepResourcesValidate(t *testing.T) {
	base := Options{Registry: "r:5000", StepImage: "img", StepCommand: []string{"/step"}}
	for name, r := range map[string]corev1.ResourceRequirements{
		"none":           {},
		"chart defaults": chartDefaults,
		"limit only":     resources(nil, map[corev1.ResourceName]string{mem: "128Mi", cpu: "1"}),
		"equal":          resources(map[corev1.ResourceName]string{mem: "128Mi"}, map[corev1.ResourceName]string{mem: "128Mi"}),
	} {
		o := base
		o.StepResources = r
		require.NoError(t, o.Validate(), name)
	}
	for want, r := range map[string]corev1.ResourceRequirements{
		"step memory request 256Mi exceeds its limit 128Mi": resources(map[corev1.ResourceName]string{mem: "256Mi"}, map[corev1.ResourceName]string{mem: "128Mi"}),
		"step cpu request 2 exceeds its limit 500m":         resources(map[corev1.ResourceName]string{cpu: "2"}, map[corev1.ResourceName]string{cpu: "500m"}),
		"step cpu request -100m is negative":                resources(map[corev1.ResourceName]string{cpu: "-100m"}, nil),
		"step memory limit -1 is negative":                  resources(nil, map[corev1.ResourceName]string{mem: "-1"}),
	} {
		o := base
		o.StepResources = r
		require.ErrorContains(t, o.Validate(), want)
	}
}

// TestStepResources: what the injected steps declare, and what they get
// once Tekton merges the task's stepTemplate into them: ours win key by
// key, and no merge leaves a request above its limit.
func TestStepResources(t *testing.T) {
	type list = map[corev1.ResourceName]string
	for name, tc := range map[string]struct {
		template  *corev1.ResourceRequirements // nil: no stepTemplate
		opts      corev1.ResourceRequirements
		declared  corev1.ResourceRequirements
		effective corev1.ResourceRequirements
	}{
		"no template": {
			opts: chartDefaults, declared: chartDefaults, effective: chartDefaults,
		},
		"no resources set": {
			template: &corev1.ResourceRequirements{}, opts: corev1.ResourceRequirements{},
			declared: corev1.ResourceRequirements{}, effective: corev1.ResourceRequirements{},
		},
		"a bigger template: ours win, its CPU limit applies": {
			template:  ptr(resources(list{cpu: "2", mem: "2Gi"}, list{cpu: "4", mem: "4Gi"})),
			opts:      chartDefaults,
			declared:  chartDefaults,
			effective: resources(list{cpu: "100m", mem: "64Mi"}, list{cpu: "4", mem: "128Mi"}),
		},
		"a template CPU limit below our request": {
			template:  ptr(resources(nil, list{cpu: "50m", mem: "256Mi"})),
			opts:      chartDefaults,
			declared:  resources(list{cpu: "50m", mem: "64Mi"}, list{mem: "128Mi"}),
			effective: resources(list{cpu: "50m", mem: "64Mi"}, list{cpu: "50m", mem: "128Mi"}),
		},
		"a template request above our limit, no request of ours": {
			template:  ptr(resources(list{mem: "2Gi"}, nil)),
			opts:      resources(nil, list{mem: "128Mi"}),
			declared:  resources(list{mem: "128Mi"}, list{mem: "128Mi"}),
			effective: resources(list{mem: "128Mi"}, list{mem: "128Mi"}),
		},
		"a template with requests only": {
			template:  ptr(resources(list{cpu: "1", mem: "1Gi"}, nil)),
			opts:      chartDefaults,
			declared:  chartDefaults,
			effective: chartDefaults,
		},
	} {
		t.Run(name, func(t *testing.T) {
			spec := &v1.TaskSpec{Steps: []v1.Step{{Name: "s", Image: "busybox"}}}
			if tc.template != nil {
				spec.StepTemplate = &v1.StepTemplate{ComputeResources: *tc.template}
			}
			before := spec.DeepCopy()
			optsBefore := tc.opts.DeepCopy()
			got := stepResources(spec, tc.opts)
			require.Equal(t, before, spec, "stepResources changed the task")
			require.Equal(t, *optsBefore, tc.opts, "stepResources changed the options")
			requireSameResources(t, tc.declared, got, "declared")

			merged, err := v1.MergeStepsWithStepTemplate(spec.StepTemplate, []v1.Step{{Name: "x", ComputeResources: got}})
			require.NoError(t, err)
			eff := merged[0].ComputeResources
			requireSameResources(t, tc.effective, eff, "effective")
			for name, lim := range eff.Limits {
				if req, ok := eff.Requests[name]; ok {
					require.LessOrEqual(t, req.Cmp(lim), 0, "%s request %s above limit %s", name, req.String(), lim.String())
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// requireSameResources compares quantities by value (100m parsed and 0.1
// merged are the same quantity, not the same struct).
func requireSameResources(t *testing.T, want, got corev1.ResourceRequirements, what string) {
	t.Helper()
	for _, l := range []struct {
		kind      string
		want, got corev1.ResourceList
	}{{"requests", want.Requests, got.Requests}, {"limits", want.Limits, got.Limits}} {
		require.Len(t, l.got, len(l.want), "%s %s: %v", what, l.kind, l.got)
		for name, q := range l.want {
			g, ok := l.got[name]
			require.True(t, ok, "%s %s: no %s", what, l.kind, name)
			require.Zero(t, q.Cmp(g), "%s %s %s: want %s, got %s", what, l.kind, name, q.String(), g.String())
		}
	}
}
