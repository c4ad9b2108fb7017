// Package transformtest holds what tests of the rewrite's output share:
// Tekton's own verdict on a converted run.
package transformtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"sigs.k8s.io/yaml"
)

// Validate runs Tekton's own defaulting and validation as Tekton's webhook
// would on admission, with the feature flags of a default install unless
// dir/feature-flags.yaml (the data of Tekton's feature-flags ConfigMap) says
// otherwise, for inputs that themselves need an alpha field.
func Validate(dir string, run *v1.PipelineRun) error {
	ctx := context.Background()
	if raw, err := os.ReadFile(filepath.Join(dir, "feature-flags.yaml")); err == nil {
		var data map[string]string
		if err := yaml.Unmarshal(raw, &data); err != nil {
			return fmt.Errorf("feature-flags.yaml: %w", err)
		}
		flags, err := config.NewFeatureFlagsFromMap(data)
		if err != nil {
			return fmt.Errorf("feature-flags.yaml: %w", err)
		}
		cfg := *config.FromContextOrDefaults(ctx)
		cfg.FeatureFlags = flags
		ctx = config.ToContext(ctx, &cfg)
	}
	r := run.DeepCopy()
	if r.Name == "" && r.GenerateName != "" {
		r.Name = r.GenerateName + "x7k2p" // as the API server would
	}
	r.SetDefaults(ctx)
	if fe := r.Validate(ctx); fe != nil {
		return fmt.Errorf("Tekton rejects the run: %w", fe)
	}
	return nil
}
