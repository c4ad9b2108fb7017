package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TektonCRDs reads config/300-crds of the github.com/tektoncd/pipeline
// module this repository builds against (the CRDs match the Go types),
// then the CRD files extra names, for envtest.Environment.CRDs.
func TektonCRDs(extra ...string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tektoncd/pipeline").Output()
	if err != nil {
		return nil, fmt.Errorf("locating the tektoncd/pipeline module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "300-crds")
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		return nil, fmt.Errorf("no Tekton CRDs in %s (is the module downloaded? go mod download github.com/tektoncd/pipeline)", dir)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range append(files, extra...) {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading CRD: %w", err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			return nil, fmt.Errorf("decoding CRD %s: %w", f, err)
		}
		crds = append(crds, crd)
	}
	return crds, nil
}
