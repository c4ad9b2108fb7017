package chart

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// moduleDir is where the Go module cache holds a dependency of this module.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	cmd := exec.Command(goBinary(), "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	require.NoError(t, err, "go list -m %s", module)
	dir := strings.TrimSpace(string(out))
	require.NotEmpty(t, dir, "%s is not downloaded (go mod download %s)", module, module)
	return dir
}

// The control plane is shared by the tests of this package: started by the
// first test that needs it, stopped by TestMain.
var (
	envMu  sync.Mutex
	env    *envtest.Environment
	envCfg *rest.Config
)

func stopAPIServer() {
	envMu.Lock()
	defer envMu.Unlock()
	if env != nil {
		_ = env.Stop()
		env = nil
	}
}

// apiServer returns a real kube-apiserver (envtest, KUBEBUILDER_ASSETS) with
// Tekton's and cert-manager's CRDs installed, and an admin client.
func apiServer(t *testing.T) (*envtest.Environment, client.Client) {
	t.Helper()
	requireEnv(t, "KUBEBUILDER_ASSETS", "these tests need a real kube-apiserver and etcd")
	envMu.Lock()
	defer envMu.Unlock()
	if env == nil {
		e := &envtest.Environment{
			CRDInstallOptions: envtest.CRDInstallOptions{
				Paths: []string{
					filepath.Join(moduleDir(t, "github.com/tektoncd/pipeline"), "config", "300-crds"),
					filepath.Join(moduleDir(t, "github.com/cert-manager/cert-manager"), "deploy", "crds"),
				},
				ErrorIfPathMissing: true,
			},
		}
		cfg, err := e.Start()
		require.NoError(t, err)
		env, envCfg = e, cfg
	}
	c, err := client.New(envCfg, client.Options{})
	require.NoError(t, err)
	return env, c
}

func createNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestServerSideDryRun creates every object of every variant, of the deploy/
// manifests and of the example runs, as a server-side dry-run against a real
// kube-apiserver with Tekton's and cert-manager's CRDs installed: the API
// server's own validation (and the CRDs' schemas) must accept each one.
func TestServerSideDryRun(t *testing.T) {
	if _, err := helm(t, "version", "--short"); err != nil {
		t.Fatal(err)
	}
	_, c := apiServer(t)
	ctx := context.Background()
	ensureNamespace := func(t *testing.T, name string) { createNamespace(t, c, name) }
	dryRun := func(t *testing.T, objs []*unstructured.Unstructured, namespace string) {
		require.NotEmpty(t, objs)
		for _, o := range objs {
			if o.GetKind() == "Namespace" {
				// Really created: the other objects need it to exist.
				ensureNamespace(t, o.GetName())
				continue
			}
			if namespace != "" && o.GetNamespace() == "" {
				o.SetNamespace(namespace)
			}
			err := c.Create(ctx, o.DeepCopy(), client.DryRunAll)
			if err != nil && o.GetNamespace() != "" && apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "cluster-scoped") {
				o.SetNamespace("")
				err = c.Create(ctx, o.DeepCopy(), client.DryRunAll)
			}
			require.NoError(t, err, "%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
		}
	}

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			ensureNamespace(t, v.namespace)
			objs := decode(t, render(t, v))
			dryRun(t, objs, "")
			if v.certManager {
				require.NotNil(t, find(t, objs, "Certificate", fullname(v)))
			}
		})
	}
	t.Run("deploy-manifests", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(repoRoot, manifestsFile))
		require.NoError(t, err)
		dryRun(t, decode(t, string(raw)), "")
	})
	// The example runs, in a namespace of their own (Tekton's webhook is not
	// running: this checks them against the CRDs' schemas).
	examples, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "examples", "*", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, examples)
	ensureNamespace(t, "examples")
	docs := map[string][]*unstructured.Unstructured{}
	for _, f := range examples {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		docs[f] = decode(t, string(raw))
		// Namespaces first, whichever file declares them.
		for _, o := range docs[f] {
			if o.GetKind() == "Namespace" {
				ensureNamespace(t, o.GetName())
			}
		}
	}
	for _, f := range examples {
		t.Run("example/"+filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			dryRun(t, docs[f], "examples")
		})
	}
}
