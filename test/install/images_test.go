// Package install checks the install path a user follows (README, "Install"):
// `make images` (hack/images.sh build), `make push-images` (hack/pushimages)
// and the step image `convert` assumes. run.sh in this folder walks the same
// path on the real test bed, up to a Succeeded labelled run.
package install

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"sigs.k8s.io/yaml"
)

const repoRoot = "../.."

// chartDefaultStepImage returns the step image the chart installs with its default
// values: steps.image.repository, tagged with appVersion when the tag is
// empty (templates/_helpers.tpl, "image").
func chartDefaultStepImage(t *testing.T) string {
	t.Helper()
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	var values struct {
		Steps struct {
			Image struct{ Repository, Tag, Digest string } `json:"image"`
		} `json:"steps"`
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "charts/tekton-oci-transport/Chart.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &chart))
	b, err = os.ReadFile(filepath.Join(repoRoot, "charts/tekton-oci-transport/values.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &values))
	img := values.Steps.Image
	require.Empty(t, img.Digest, "the chart's default step image has a digest: compare with it")
	tag := img.Tag
	if tag == "" {
		tag = chart.AppVersion
	}
	require.NotEmpty(t, img.Repository)
	require.NotEmpty(t, tag)
	return img.Repository + ":" + tag
}

// `convert` with no --step-image injects the image the chart of the same
// tree installs by default, whatever version the binary was stamped with
// (make build stamps git describe, which names no pushed image between
// releases).
func TestConvertDefaultStepImageIsTheChartDefault(t *testing.T) {
	want := chartDefaultStepImage(t)
	bin := filepath.Join(t.TempDir(), "webhook")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-not-the-chart", "-o", bin, "./cmd/webhook")
	build.Dir = repoRoot
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "convert", "-f", filepath.Join(repoRoot, "transform/testdata/linear/input.yaml"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	obj, err := decode.Object(stdout.Bytes())
	require.NoError(t, err)
	run := obj.(*v1.PipelineRun)
	injected := 0
	for _, pt := range run.Spec.PipelineSpec.Tasks {
		for _, s := range pt.TaskSpec.Steps {
			if strings.HasPrefix(s.Name, "oci-transport-") {
				injected++
				require.Equal(t, want, s.Image, "%s/%s", pt.Name, s.Name)
			}
		}
	}
	require.NotZero(t, injected, "no injected step in the converted run")
}

// make images, then make push-images to a registry that wants credentials
// (from a Docker config, as a user's `docker login` leaves them): the
// archives are OCI layouts holding what the README says, the same source
// gives the same digests, the registry serves the pushed tags at those
// digests, and the printed helm flags name them.
func TestImagesBuildAndPush(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both images")
	}
	regBin := testenv.Require(t, "REGISTRY_BIN", "the push goes to a real registry")
	creds := testenv.Credentials{Username: "pusher", Password: "s3cret"}
	reg, err := testenv.StartRegistry(regBin, testenv.RegistryOptions{Auth: &creds})
	require.NoError(t, err)
	t.Cleanup(reg.Close)

	dir := t.TempDir()
	// a fixed revision: HEAD may move between the two builds (a commit in
	// the same checkout); the same tree must give the same bytes
	const version, revision = "v0.0.0-install-test", "0123456789abcdef0123456789abcdef01234567"
	images := func(out string, verb string, env ...string) string {
		t.Helper()
		cmd := exec.Command("hack/images.sh", verb)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), append([]string{"VERSION=" + version, "REVISION=" + revision, "IMAGES_DIR=" + out}, env...)...)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, string(b))
		return string(b)
	}
	images(filepath.Join(dir, "a"), "build")
	images(filepath.Join(dir, "b"), "build")

	ctx := context.Background()
	digests := map[string]string{}
	for _, name := range []string{"webhook", "oci-transport-step"} {
		a, b := filepath.Join(dir, "a", name+".tar"), filepath.Join(dir, "b", name+".tar")
		ab, err := os.ReadFile(a)
		require.NoError(t, err)
		bb, err := os.ReadFile(b)
		require.NoError(t, err)
		require.True(t, bytes.Equal(ab, bb), "%s: two builds of the same tree differ", name)

		store, err := oci.NewFromTar(ctx, a)
		require.NoError(t, err)
		desc, err := store.Resolve(ctx, version)
		require.NoError(t, err, "%s: the archive names its tag", name)
		require.Equal(t, ocispec.MediaTypeImageManifest, desc.MediaType)
		digests[name] = desc.Digest.String()
		var manifest ocispec.Manifest
		mb, err := content.FetchAll(ctx, store, desc)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(mb, &manifest))
		require.Equal(t, version, manifest.Annotations[ocispec.AnnotationVersion])
		require.Equal(t, revision, manifest.Annotations[ocispec.AnnotationRevision])
		require.Len(t, manifest.Layers, 1)
		var config ocispec.Image
		cb, err := content.FetchAll(ctx, store, manifest.Config)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(cb, &config))
		require.Equal(t, "linux", config.OS)
		require.Equal(t, []string{"/usr/local/bin/" + name}, config.Config.Entrypoint)
		if name == "webhook" {
			require.Equal(t, "65532", config.Config.User, "the webhook never runs as root")
		} else {
			require.Empty(t, config.Config.User, "the step image runs as the Task says, root by default (Dockerfile)")
		}
		lb, err := content.FetchAll(ctx, store, manifest.Layers[0])
		require.NoError(t, err)
		files := layerFiles(t, lb)
		require.Equal(t, []string{
			"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
			"tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/" + name,
		}, sortedKeys(files), name)
		require.Equal(t, int64(0o1777), files["tmp/"].Mode&0o7777, "/tmp is 1777")
		require.Equal(t, int64(0o755), files["usr/local/bin/"+name].Mode&0o7777)
		for n, h := range files {
			require.Zero(t, h.Uid, n)
			require.Zero(t, h.Gid, n)
		}
		if name == "webhook" {
			// the binary answers with the version it was stamped with
			bin := filepath.Join(dir, "webhook-bin")
			require.NoError(t, os.WriteFile(bin, files["usr/local/bin/webhook"].content, 0o755))
			out, err := exec.Command(bin, "version").CombinedOutput()
			require.NoError(t, err, string(out))
			require.Equal(t, version, strings.TrimSpace(string(out)))
		}
	}

	// push, with the credentials in a Docker config only
	dockerConfig := t.TempDir()
	auths := map[string]any{"auths": map[string]any{reg.Addr(): map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(creds.Username + ":" + creds.Password)),
	}}}
	cb, err := json.Marshal(auths)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dockerConfig, "config.json"), cb, 0o600))
	setFile := filepath.Join(dir, "sets")
	repo := reg.Addr() + "/team/tekton-oci-transport"
	out := images(filepath.Join(dir, "a"), "push", "IMAGE_REPO="+repo, "PLAIN_HTTP=1", "SET_FILE="+setFile, "DOCKER_CONFIG="+dockerConfig)

	sets := "--set webhook.image.repository=" + repo + "/webhook\n" +
		"--set webhook.image.digest=" + digests["webhook"] + "\n" +
		"--set steps.image.repository=" + repo + "/oci-transport-step\n" +
		"--set steps.image.digest=" + digests["oci-transport-step"] + "\n"
	sb, err := os.ReadFile(setFile)
	require.NoError(t, err)
	require.Equal(t, sets, string(sb))
	require.Contains(t, out, "helm install tekton-oci-transport charts/tekton-oci-transport")
	for _, s := range strings.Split(strings.TrimSpace(sets), "\n") {
		require.Contains(t, out, s)
	}
	for name, d := range digests {
		require.Contains(t, out, "pushed "+repo+"/"+name+":"+version+"@"+d)
		r, err := remote.NewRepository(repo + "/" + name)
		require.NoError(t, err)
		r.PlainHTTP = true
		r.Client = &auth.Client{Credential: auth.StaticCredential(reg.Addr(), auth.Credential{Username: creds.Username, Password: creds.Password})}
		desc, err := r.Resolve(ctx, version)
		require.NoError(t, err, name)
		require.Equal(t, d, desc.Digest.String(), name)
	}

	// without credentials the registry refuses, and the push says so
	cmd := exec.Command("hack/images.sh", "push")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "VERSION="+version, "IMAGES_DIR="+filepath.Join(dir, "a"), "IMAGE_REPO="+repo, "PLAIN_HTTP=1", "DOCKER_CONFIG="+t.TempDir())
	b, err := cmd.CombinedOutput()
	require.Error(t, err, string(b))
	require.Contains(t, string(b), "the registry wants credentials and the Docker config has none for it")
}

type file struct {
	*tar.Header
	content []byte
}

func layerFiles(t *testing.T, gz []byte) map[string]file {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	files := map[string]file{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[h.Name] = file{h, b}
	}
	return files
}

func sortedKeys(m map[string]file) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	return keys
}
