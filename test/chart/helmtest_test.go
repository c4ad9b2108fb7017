package chart

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	corev1 "k8s.io/api/core/v1"
)

// TestHelmTestPod runs the `helm test` pod's containers, in order, outside a
// cluster: its shell commands with the local sh, its step containers with the
// step binary built from cmd/oci-transport-step, its volumes as directories.
// In token mode the bundled zot is the real zot (ZOT_BIN) started with the
// chart's own config (only its address, storage and file paths made local),
// the token service runs with the webhook's rendered --token-* flags against
// a real kube-apiserver, and the projected volume holds a real token of the
// pod's ServiceAccount; in the other modes a real registry (REGISTRY_BIN)
// stands in for zot. The pod's own arguments are used as rendered, so a wrong
// flag or path fails here instead of in a user's `helm test`.
func TestHelmTestPod(t *testing.T) {
	for _, v := range variants {
		switch v.name {
		case "defaults", "htpasswd", "no-auth":
		default:
			continue
		}
		t.Run(v.name, func(t *testing.T) { runHelmTestPod(t, v) })
	}
}

func runHelmTestPod(t *testing.T, v variant) {
	pod := &corev1.Pod{}
	objs := decode(t, render(t, v))
	into(t, find(t, objs, "Pod", fullname(v)+"-test"), pod)
	require.Equal(t, "test", pod.Annotations["helm.sh/hook"])

	step := buildStep(t)
	root := t.TempDir()
	uid := "5f0c7f1e-0000-4000-8000-000000000001"
	zot := zotName(v) + "." + v.namespace + ".svc:5000"
	var registry string
	switch v.auth {
	case authToken:
		registry = startTokenZot(t, v, objs, pod, root)
	case authHtpasswd:
		var dockerConfig []byte
		registry, dockerConfig = startRegistry(t, true)
		// The Secret registry.auth.dockerConfigSecret, as the kubelet mounts it.
		require.NoError(t, os.MkdirAll(filepath.Join(root, "docker"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, "docker", ".dockerconfigjson"), dockerConfig, 0o600))
	default:
		registry, _ = startRegistry(t, false)
	}
	var outputs []string
	var pull []string // the pull container's command line, made local
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		// Mount paths become directories of the test, longest first so no
		// path is rewritten inside another.
		mounts := map[string]string{}
		var paths []string
		for _, m := range c.VolumeMounts {
			dir := filepath.Join(root, m.Name)
			require.NoError(t, os.MkdirAll(dir, 0o755))
			mounts[m.MountPath] = dir
			paths = append(paths, m.MountPath)
		}
		sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
		local := func(s string) string {
			s = strings.ReplaceAll(s, "$(POD_UID)", uid) // what the kubelet expands
			s = strings.ReplaceAll(s, zot, registry)
			for _, p := range paths {
				s = strings.ReplaceAll(s, p, mounts[p])
			}
			return s
		}
		argv := append(append([]string{}, c.Command...), c.Args...)
		for i := range argv {
			argv[i] = local(argv[i])
		}
		switch c.Image {
		case "busybox:1.37":
			require.Equal(t, "sh", argv[0], c.Name)
		default:
			require.Equal(t, "/usr/local/bin/oci-transport-step", argv[0], c.Name)
			argv[0] = step
		}
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		require.NoError(t, err, "container %s: %s\n%s", c.Name, strings.Join(argv, " "), out)
		outputs = append(outputs, string(out))
		if c.Name == "pull" {
			pull = argv
		}
	}
	require.Contains(t, outputs[len(outputs)-1], "push and pull OK")
	got, err := os.ReadFile(filepath.Join(root, "dst", "dir", "probe.txt"))
	require.NoError(t, err)
	require.Equal(t, "probe "+uid+"\n", string(got))

	if v.auth == authToken {
		// Without the token, the same pull is refused: zot checked it.
		var anonymous []string
		for _, a := range pull {
			if !strings.HasPrefix(a, "--registry-token-file=") {
				anonymous = append(anonymous, a)
			}
		}
		require.NotEqual(t, len(pull), len(anonymous))
		require.NoError(t, os.RemoveAll(filepath.Join(root, "state", "pull")))
		out, err := exec.Command(anonymous[0], anonymous[1:]...).CombinedOutput()
		require.Error(t, err, "a pull without the token: %s", out)
		require.Contains(t, string(out), "401", "a pull without the token")
	}
}

// startRegistry runs REGISTRY_BIN (CNCF Distribution) on a free port for the
// test and returns its host:port; with auth, it checks an htpasswd file and
// the docker config that logs in is returned too.
func startRegistry(t *testing.T, auth bool) (string, []byte) {
	t.Helper()
	bin := requireEnv(t, "REGISTRY_BIN", "the helm test pod is run against a real registry")
	o := testenv.RegistryOptions{Dir: t.TempDir()}
	if auth {
		o.Auth = &testenv.Credentials{Username: "tekton", Password: "s3cret"}
	}
	reg, err := testenv.StartRegistry(bin, o)
	require.NoError(t, err, "registry did not start")
	t.Cleanup(func() {
		reg.Close()
		if t.Failed() {
			t.Logf("registry logs:\n%s", reg.Logs())
		}
	})
	var dockerConfig []byte
	if auth {
		dockerConfig, err = json.Marshal(map[string]any{"auths": map[string]any{
			reg.Addr(): map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("tekton:s3cret"))},
		}})
		require.NoError(t, err)
	}
	return reg.Addr(), dockerConfig
}

// buildStep builds cmd/oci-transport-step into the test's temporary tree.
func buildStep(t *testing.T) string {
	t.Helper()
	out := filepath.Join(helmHome, "bin", "oci-transport-step")
	cmd := exec.Command(goBinary(), "build", "-o", out, "./cmd/oci-transport-step")
	cmd.Dir = repoRoot
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}
