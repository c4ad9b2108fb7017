package transform_test

import (
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/golden"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/offline"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/transformtest"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// testOptions are the options every golden case is converted with: the
// chart's defaults (the steps' resources, a registry token for the token
// service's audience).
func testOptions() transform.Options {
	return transform.Options{
		Registry:         "zot.tekton-oci-transport.svc:5000",
		RepositoryPrefix: "tekton-oci-transport",
		PlainHTTP:        true,
		StepImage:        "registry.local/tekton-oci-transport/step:test",
		StepCommand:      []string{"/usr/local/bin/oci-transport-step"},
		StepResources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		RegistryTokenAudience: "oci-transport.tekton.dev/registry",
	}
}

// loadCase reads testdata/<case>/input.yaml: the PipelineRun first, then the
// Pipeline and Tasks its references resolve to, plus any files in refs/
// (resolved as offline.Resolve does: by name, git/http refs by file name). A
// reference left unresolved is what some cases test.
func loadCase(t testing.TB, dir string) (*v1.PipelineRun, transform.Resolved) {
	t.Helper()
	docs, err := offline.LoadFile(filepath.Join(dir, "input.yaml"), nil)
	require.NoError(t, err)
	require.NotEmpty(t, docs)
	refs, err := filepath.Glob(filepath.Join(dir, "refs", "*.yaml"))
	require.NoError(t, err)
	for _, ref := range refs {
		more, err := offline.LoadFile(ref, nil)
		require.NoError(t, err)
		docs = append(docs, more...)
	}
	run, ok := docs[0].Object.(*v1.PipelineRun)
	require.True(t, ok, "the first document of input.yaml must be the PipelineRun")
	resolved, _ := offline.Resolve(run, docs)
	return run, resolved
}

func encode(t testing.TB, obj any) []byte {
	t.Helper()
	b, err := offline.EncodeYAML(obj)
	require.NoError(t, err)
	return b
}

func TestGolden(t *testing.T) {
	// Only case folders: testdata/fuzz holds the fuzzer's regression inputs.
	inputs, err := filepath.Glob("testdata/*/input.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, input := range inputs {
		dir := filepath.Dir(input)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			run, resolved := loadCase(t, dir)
			before := encode(t, run)

			out, report, err := transform.PipelineRun(run, resolved, testOptions())
			require.NoError(t, err)
			require.Equal(t, string(before), string(encode(t, run)), "transform mutated its input")

			got := encode(t, out)
			gotReport, err := yaml.Marshal(report)
			require.NoError(t, err)
			golden.Check(t, filepath.Join(dir, "want.yaml"), got, "go test ./transform -update")
			golden.Check(t, filepath.Join(dir, "report.yaml"), gotReport, "go test ./transform -update")

			t.Run("valid for Tekton", func(t *testing.T) {
				requireValid(t, dir, out)
				// What is stored is the encoded output, not the typed
				// object: an empty object lost in encoding shows here.
				stored, err := decode.Object(got)
				require.NoError(t, err)
				requireValid(t, dir, stored.(*v1.PipelineRun))
			})

			t.Run("idempotent", func(t *testing.T) {
				again, report2, err := transform.PipelineRun(out, resolved, testOptions())
				require.NoError(t, err)
				require.Equal(t, string(got), string(encode(t, again)))
				want := report.Outcome
				if want == transform.Converted {
					want = transform.AlreadyConverted
				}
				require.Equal(t, want, report2.Outcome)
			})

			if report.Outcome == transform.Converted {
				t.Run("idempotent without the marker", func(t *testing.T) {
					stripped := out.DeepCopy()
					delete(stripped.Annotations, transform.AnnotationConverted)
					again, report2, err := transform.PipelineRun(stripped, resolved, testOptions())
					require.NoError(t, err)
					require.Equal(t, transform.AlreadyConverted, report2.Outcome)
					require.Equal(t, string(encode(t, stripped)), string(encode(t, again)))
				})
			}
		})
	}
}

// requireValid: Tekton accepts run (transformtest.Validate).
func requireValid(t *testing.T, dir string, run *v1.PipelineRun) {
	t.Helper()
	require.NoError(t, transformtest.Validate(dir, run))
}
