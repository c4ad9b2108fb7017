// Package s3 runs the chart's zot on S3 storage for real, outside a
// cluster: versitygw (an S3 gateway over a POSIX folder, `hack/tools.sh
// versitygw`) holds the bucket, and two zot v2.1.20 processes run the
// config.json the chart renders for `zot.replicas: 2` on s3 (zot's scale-out
// cluster), with only the addresses, the endpoint and the local metadata
// folder made local. The step's own transport pushes and pulls workspace
// trees through them.
//
// Needs HELM_BIN and zot (ZOT_BIN or ../shared/zot/zot) like test/chart,
// and versitygw (VERSITYGW_BIN, else `hack/tools.sh versitygw`, cached);
// without them it skips, and under CI it fails.
package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/transport"
	"sigs.k8s.io/yaml"
)

const (
	chartDir   = "../../charts/tekton-oci-transport"
	valuesFile = "../chart/testdata/values/zot-s3-cluster.yaml"
	release    = "tekton-oci-transport"
	bucket     = "tekton-oci-transport"
	accessKey  = "zot-test-access"
	secretKey  = "zot-test-secret-0123456789"
)

// versitygwBin finds versitygw: VERSITYGW_BIN, else the tools cache
// (hack/tools.sh builds it once from the Go module proxy).
func versitygwBin(t *testing.T) string {
	t.Helper()
	if v := os.Getenv("VERSITYGW_BIN"); v != "" {
		return v
	}
	out, err := exec.Command("../../hack/tools.sh", "versitygw").Output()
	if err == nil {
		bin := filepath.Join(strings.TrimSpace(string(out)), "versitygw")
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	msg := fmt.Sprintf("versitygw not found (VERSITYGW_BIN unset, `hack/tools.sh versitygw`: %v)", err)
	if testenv.InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// proc is a process of the test, its output kept for failures.
type proc struct {
	name string
	argv []string
	env  []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logs == nil {
		p.logs = &bytes.Buffer{}
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	w := &lockedWriter{mu: &p.mu, w: p.logs}
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(t, cmd.Start(), p.name)
	p.cmd = cmd
}

// kill sends SIGKILL (no graceful shutdown: a pod that dies).
func (p *proc) kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func waitHTTP(t *testing.T, url string, what string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered on %s:\n%s", what, url, logs())
}

// renderedConfig is the zot config.json the chart renders for the s3
// two-replica values, without registry auth (the token service is
// test/chart's business).
func renderedConfig(t *testing.T) map[string]any {
	t.Helper()
	helm := testenv.Require(t, "HELM_BIN", "the chart renders zot's config")
	home := t.TempDir()
	cmd := exec.Command(helm, "template", release, chartDir, "--namespace", release,
		"-f", valuesFile, "--set", "registry.auth.mode=none", "--show-only", "templates/zot-config.yaml")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	var cm struct {
		Data map[string]string `json:"data"`
	}
	require.NoError(t, yaml.Unmarshal(out, &cm))
	var cfg map[string]any
	require.NoError(t, json.Unmarshal([]byte(cm.Data["config.json"]), &cfg))
	return cfg
}

// cluster is versitygw and two zot members on 127.0.0.1.
type cluster struct {
	gwDir   string
	gw      *proc
	zots    [2]*proc
	addrs   [2]string
	configs [2]string
	meta    [2]string // each member's rootDirectory: its local metadata (the pod's emptyDir)
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	zotBin := testenv.ZotBin(t)
	gwBin := versitygwBin(t)
	cfg := renderedConfig(t)
	c := &cluster{gwDir: t.TempDir()}

	// The bucket: versitygw's posix backend serves every top-level folder
	// as a bucket (zot does not create buckets).
	require.NoError(t, os.Mkdir(filepath.Join(c.gwDir, bucket), 0o755))
	gwAddr, err := testenv.FreeAddr()
	require.NoError(t, err)
	c.gw = &proc{name: "versitygw", argv: []string{gwBin, "--port", gwAddr, "--quiet", "posix", c.gwDir},
		env: []string{"ROOT_ACCESS_KEY_ID=" + accessKey, "ROOT_SECRET_ACCESS_KEY=" + secretKey}}
	c.gw.start(t)
	t.Cleanup(func() {
		c.gw.kill()
		if t.Failed() {
			t.Logf("versitygw:\n%s", c.gw.output())
		}
	})
	waitHTTP(t, "http://"+gwAddr+"/", "versitygw", c.gw.output)

	// The chart's config, as rendered: storage, GC, retention, timeouts,
	// the cluster's hashKey. Made local: the endpoint, each member's
	// address (zot finds itself in the members by its own address and
	// port) and the metadata folder (the pod's emptyDir).
	driver := cfg["storage"].(map[string]any)["storageDriver"].(map[string]any)
	require.Equal(t, "s3", driver["name"])
	driver["regionendpoint"] = "http://" + gwAddr
	clusterCfg := cfg["cluster"].(map[string]any)
	require.Len(t, clusterCfg["members"], 2)
	for i := range c.addrs {
		c.addrs[i], err = testenv.FreeAddr()
		require.NoError(t, err)
	}
	clusterCfg["members"] = []string{c.addrs[0], c.addrs[1]}
	for i := range c.zots {
		host, port, _ := strings.Cut(c.addrs[i], ":")
		cfg["http"].(map[string]any)["address"] = host
		cfg["http"].(map[string]any)["port"] = port
		c.meta[i] = t.TempDir()
		cfg["storage"].(map[string]any)["rootDirectory"] = c.meta[i]
		raw, err := json.MarshalIndent(cfg, "", "  ")
		require.NoError(t, err)
		c.configs[i] = filepath.Join(t.TempDir(), "config.json")
		require.NoError(t, os.WriteFile(c.configs[i], raw, 0o644))
		out, err := exec.Command(zotBin, "verify", c.configs[i]).CombinedOutput()
		require.NoError(t, err, "zot verify:\n%s", out)
		c.zots[i] = &proc{name: fmt.Sprintf("zot-%d", i), argv: []string{zotBin, "serve", c.configs[i]},
			env: []string{"AWS_ACCESS_KEY_ID=" + accessKey, "AWS_SECRET_ACCESS_KEY=" + secretKey}}
	}
	for i, z := range c.zots {
		z.start(t)
		t.Cleanup(func() {
			z.kill()
			if t.Failed() {
				t.Logf("%s:\n%s", z.name, z.output())
			}
		})
		waitHTTP(t, "http://"+c.addrs[i]+"/v2/", z.name, z.output)
		require.Contains(t, z.output(), `"clusterMember":"`+c.addrs[i]+`"`, "zot did not find itself among the members")
	}
	return c
}

func (c *cluster) opts(member int, repo string) transport.Options {
	return transport.Options{Registry: c.addrs[member], Repository: repo, PlainHTTP: true}
}

// tree writes a workspace: a few small files and one of size bytes.
func tree(t *testing.T, seed string, size int) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "src", "pkg"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("workspace "+seed+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "src", "pkg", "run.sh"), []byte("#!/bin/sh\necho "+seed+"\n"), 0o755))
	big := make([]byte, size)
	for i := range big {
		big[i] = byte(i*31 + len(seed)*7 + i/4096)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "src", "data.bin"), big, 0o644))
	return dir
}

func push(ctx context.Context, t *testing.T, o transport.Options, task, dir string) (*transport.PushResult, error) {
	return transport.Push(ctx, transport.PushOptions{Options: o, Tag: task, Task: task,
		Mounts: []transport.Mount{{Dir: dir}}, StateDir: t.TempDir()})
}

func pull(ctx context.Context, t *testing.T, o transport.Options, from ...string) (string, error) {
	dir := t.TempDir()
	_, err := transport.Pull(ctx, transport.PullOptions{Options: o, From: from,
		Mounts: []transport.Mount{{Dir: dir}}, StateDir: t.TempDir()})
	return dir, err
}

// sameTree compares the regular files of two trees.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	files := func(root string) map[string]string {
		m := map[string]string{}
		require.NoError(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			m[rel] = fmt.Sprintf("%v %x", fi.Mode(), b)
			return err
		}))
		return m
	}
	require.Equal(t, files(want), files(got))
}

// objectPath is where versitygw keeps a blob of repo: zot's s3 store puts
// its keys under rootdirectory twice (/zot/zot/<repo>/...).
func (c *cluster) objectPath(repo, digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(c.gwDir, bucket, "zot", "zot", repo, "blobs", algo, hex)
}

// TestTwoZotsShareABucket: what the chart's s3 + two-replica mode promises,
// with the real zot, versitygw and the step's transport.
func TestTwoZotsShareABucket(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()

	// Runs' workspaces pushed through one member, pulled through the other:
	// the members share the bucket, whichever of them serves a repository.
	type run struct {
		repo, task, dir string
		manifest        string
	}
	var runs []*run
	for i := range 8 {
		r := &run{repo: fmt.Sprintf("tekton-oci-transport/ns1/run-%d/ws", i), task: "build", dir: tree(t, fmt.Sprint(i), 256<<10)}
		res, err := push(ctx, t, c.opts(i%2, r.repo), r.task, r.dir)
		require.NoError(t, err, "push %s through member %d", r.repo, i%2)
		r.manifest = res.Manifest.Digest.String()
		runs = append(runs, r)
	}
	for i, r := range runs {
		got, err := pull(ctx, t, c.opts(1-i%2, r.repo), r.task)
		require.NoError(t, err, "pull %s through member %d", r.repo, 1-i%2)
		sameTree(t, r.dir, got)
		// The blobs are objects in the bucket, on versitygw's disk.
		fi, err := os.Stat(c.objectPath(r.repo, r.manifest))
		require.NoError(t, err, "the manifest is not in the bucket")
		require.Positive(t, fi.Size())
	}
	t.Logf("8 runs pushed through one member and pulled through the other; blobs in %s", filepath.Join(c.gwDir, bucket))

	// Parallel tasks of one run push their tags into one repository at once,
	// through both members (the Service spreads connections): the member that
	// serves the repository writes every tag, none is lost. (Two zots on one
	// bucket without the cluster config lost 8 of 16 here: each rewrote
	// index.json from its own stale copy.)
	fanRepo := "tekton-oci-transport/ns1/fan-in/ws"
	var wg sync.WaitGroup
	errs := make([]error, 16)
	dirs := make([]string, 16)
	for i := range 16 {
		dirs[i] = tree(t, fmt.Sprint("fan", i), 4<<10)
	}
	for i := range 16 {
		wg.Go(func() {
			_, errs[i] = push(ctx, t, c.opts(i%2, fanRepo), fmt.Sprintf("task-%02d", i), dirs[i])
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "task-%02d", i)
	}
	for m := range c.addrs {
		resp, err := http.Get("http://" + c.addrs[m] + "/v2/" + fanRepo + "/tags/list")
		require.NoError(t, err)
		var tags struct{ Tags []string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&tags))
		resp.Body.Close()
		require.Len(t, tags.Tags, 16, "member %d lists %v", m, tags.Tags)
	}

	// A member dies (SIGKILL) while a push through the other one is in
	// flight. The survivor keeps serving the repositories it owns; those the
	// dead member owned answer 500 until it is back (scale-out shards, it
	// does not fail over). Nothing in the bucket is lost.
	bigDir := tree(t, "big", 48<<20)
	inflight := make(chan error, 1)
	go func() {
		_, err := push(ctx, t, c.opts(0, "tekton-oci-transport/ns1/inflight/ws"), "build", bigDir)
		inflight <- err
	}()
	time.Sleep(200 * time.Millisecond)
	c.zots[1].kill()
	inflightErr := <-inflight
	t.Logf("push in flight through member 0 when member 1 was killed: %v", inflightErr)

	var served, failed []*run
	for _, r := range runs {
		got, err := pull(ctx, t, c.opts(0, r.repo), r.task)
		if err != nil {
			require.Contains(t, err.Error(), "500", "%s: a dead owner answers 500 through the survivor", r.repo)
			// The step exits 1 (a registry failure), not 4: nothing is
			// missing, the registry failed.
			require.Equal(t, transport.ExitFailed, transport.ExitCode(err), "%v", err)
			failed = append(failed, r)
			continue
		}
		sameTree(t, r.dir, got)
		served = append(served, r)
	}
	t.Logf("member 1 down: %d of %d runs still served through member 0, %d answer 500", len(served), len(runs), len(failed))
	require.NotEmpty(t, served, "the survivor must serve the repositories it owns")
	require.NotEmpty(t, failed, "with 8 runs both members own some (hashKey fixed by the chart)")
	// The survivor's own repositories keep taking pushes.
	_, err := push(ctx, t, c.opts(0, served[0].repo), "test", tree(t, "after-kill", 1<<10))
	require.NoError(t, err, "a push into a repository the survivor owns")

	// The member comes back with an empty metadata folder (a new pod's
	// emptyDir) and serves its repositories again, from the bucket.
	require.NoError(t, os.RemoveAll(c.meta[1]))
	require.NoError(t, os.Mkdir(c.meta[1], 0o755))
	c.zots[1].start(t)
	waitHTTP(t, "http://"+c.addrs[1]+"/v2/", "zot-1 (restarted)", c.zots[1].output)
	for i, r := range runs {
		got, err := pull(ctx, t, c.opts(i%2, r.repo), r.task)
		require.NoError(t, err, "after the restart, %s", r.repo)
		sameTree(t, r.dir, got)
	}
	if inflightErr == nil {
		got, err := pull(ctx, t, c.opts(1, "tekton-oci-transport/ns1/inflight/ws"), "build")
		require.NoError(t, err, "the push that finished before the kill")
		sameTree(t, bigDir, got)
	} else {
		_, err := push(ctx, t, c.opts(0, "tekton-oci-transport/ns1/inflight/ws"), "build", bigDir)
		require.NoError(t, err, "the push that failed, retried once the owner is back")
	}
}
