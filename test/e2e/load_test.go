package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/webhooktest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestLoad is the webhook load benchmark (make bench-webhook): the real
// webhook binary, its informer cache holding 1 000 Tasks, answers admission
// of the inline 13-task run over HTTPS at a fixed rate; it reports latency
// percentiles and the process's RSS. Nothing here asserts time: the numbers
// go into the issue notes.
func TestLoad(t *testing.T) {
	need(t)
	if os.Getenv("BENCH_WEBHOOK") != "1" {
		t.Skip("the load benchmark runs with BENCH_WEBHOOK=1 (make bench-webhook)")
	}
	rate := envInt("BENCH_RATE", 100)
	duration := time.Duration(envInt("BENCH_SECONDS", 30)) * time.Second
	tasks := envInt("BENCH_TASKS", 1000)
	ctx := context.Background()

	bin := os.Getenv("WEBHOOK_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "webhook")
		out, err := exec.Command("go", "build", "-o", bin, "../../cmd/webhook").CombinedOutput()
		require.NoError(t, err, string(out))
	}

	e := newEnv(t, nil)
	start := time.Now()
	createTasks(t, e, tasks)
	t.Logf("created %d Tasks in %s", tasks, time.Since(start).Round(time.Millisecond))

	user, err := suite.env.AddUser(envtest.User{Name: "bench", Groups: []string{"system:masters"}}, nil)
	require.NoError(t, err)
	kc, err := user.KubeConfig()
	require.NoError(t, err)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, kc, 0o600))

	port, err := freePort()
	require.NoError(t, err)
	hp, err := freePort()
	require.NoError(t, err)
	health := net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
	mp, err := freePort()
	require.NoError(t, err)
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mp))
	logFile, err := os.Create(filepath.Join(dir, "webhook.log"))
	require.NoError(t, err)
	args := []string{"serve", "--kubeconfig", kubeconfig,
		"--listen-host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--cert-dir", suite.env.WebhookInstallOptions.LocalServingCertDir,
		"--metrics-address", metricsAddr, "--health-address", health,
		"--registry", options.Registry, "--step-image", options.StepImage}
	// BENCH_TOKENS=1: the registry token service runs in the same process
	// (as the chart's default install), and registry tokens are issued at
	// the same rate as admissions, at the same time.
	tokens := os.Getenv("BENCH_TOKENS") == "1"
	tokenAddr := ""
	if tokens {
		tp, err := freePort()
		require.NoError(t, err)
		tokenAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tp))
		args = append(args, "--namespace", e.ns, "--token-service-address", tokenAddr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if limit := os.Getenv("BENCH_GOMEMLIMIT"); limit != "" {
		// As the chart sets it from the container's memory limit.
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+limit)
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	require.NoError(t, waitReady(ctx, "http://"+health+"/readyz", 60*time.Second))
	time.Sleep(2 * time.Second) // let startup garbage settle before the idle reading
	idle := rss(t, cmd.Process.Pid)
	if os.Getenv("BENCH_PPROF") != "" {
		t.Logf("webhook log and heap: %s", dir)
	}

	body := reviewBody(t, e.ns)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(suite.env.WebhookInstallOptions.LocalServingCAData))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 200,
	}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, registration.Path)
	var last atomic.Pointer[[]byte]
	post := func() (time.Duration, error) {
		s := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		took := time.Since(s)
		if err != nil {
			return 0, err
		}
		// A cheap check: the load generator shares the machine's two cores
		// with the webhook, so it must not spend them decoding every answer
		// (the warm-up below decodes them fully).
		if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"allowed":true`)) || !bytes.Contains(data, []byte(`"patch":"`)) {
			return 0, fmt.Errorf("run not converted (%d): %.300s", resp.StatusCode, data)
		}
		last.Store(&data)
		return took, nil
	}
	for range 50 { // warm-up: connections, first-use allocations
		_, err := post()
		require.NoError(t, err)
	}
	var review admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(*last.Load(), &review))
	require.True(t, review.Response.Allowed)
	require.NotEmpty(t, review.Response.Patch)
	require.Equal(t, admissionv1.PatchTypeJSONPatch, *review.Response.PatchType)

	var issue func() (time.Duration, error)
	if tokens {
		issue = tokenIssuer(t, e, tokenAddr)
		for range 20 { // warm-up, and proof that tokens are issued
			_, err := issue()
			require.NoError(t, err)
		}
	}

	// BENCH_RATES (say 100,150,200) runs one round per rate against the
	// same webhook, to find where the tail latency gives way.
	rates := []int{rate}
	if list := os.Getenv("BENCH_RATES"); list != "" {
		rates = nil
		for _, f := range strings.Split(list, ",") {
			r, err := strconv.Atoi(strings.TrimSpace(f))
			require.NoError(t, err, "BENCH_RATES")
			rates = append(rates, r)
		}
	}
	for _, rate := range rates {
		admissions, tokenLat := newSeries(), newSeries()
		load0, gen0, hook0 := loadavg(), selfCPU(t), procCPU(t, cmd.Process.Pid)
		began := time.Now()
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(rate))
		end := time.Now().Add(duration)
		for now := range tick.C {
			if now.After(end) {
				break
			}
			wg.Add(1)
			go func() { defer wg.Done(); admissions.add(post()) }()
			if issue != nil {
				wg.Add(1)
				go func() { defer wg.Done(); tokenLat.add(issue()) }()
			}
		}
		tick.Stop()
		wg.Wait()
		wall := time.Since(began)
		gen, hook := selfCPU(t)-gen0, procCPU(t, cmd.Process.Pid)-hook0
		peak := rss(t, cmd.Process.Pid)
		require.Empty(t, admissions.failed(), "admissions")
		require.Empty(t, tokenLat.failed(), "registry tokens")

		// The load generator (this process: the HTTPS client, its TLS and
		// goroutines) shares the machine's cores with the webhook, and the
		// machine may be busy with other work: both are part of the numbers.
		report := fmt.Sprintf("webhook load: %d requests at %d/s for %s, 13-task inline run, %d Tasks cached: %s; RSS idle %s, after load %s, peak %s; "+
			"CPU over %s: webhook %s (%.0f%% of a core, %s per request), load generator %s (%.0f%% of a core); loadavg before %s, after %s",
			len(admissions.latencies), rate, duration, tasks, admissions.percentiles(), idle, peak, peak.hwm,
			wall.Round(100*time.Millisecond), hook.Round(10*time.Millisecond), 100*hook.Seconds()/wall.Seconds(), perRequest(hook, len(admissions.latencies)),
			gen.Round(10*time.Millisecond), 100*gen.Seconds()/wall.Seconds(), load0, loadavg())
		if tokens {
			report += fmt.Sprintf("; registry tokens at the same time, %d at %d/s (TokenReview each): %s", len(tokenLat.latencies), rate, tokenLat.percentiles())
		}
		report += "; server side (handler histogram, cumulative over rounds): " + serverSide(t, "http://"+metricsAddr+"/metrics")
		t.Log(report)
		fmt.Println(report)
	}
}

func perRequest(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return (d / time.Duration(n)).Round(10 * time.Microsecond)
}

// selfCPU is the user and system CPU time this process used so far.
func selfCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user and system CPU time process pid used so far
// (/proc/pid/stat, in clock ticks of 10 ms).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// the fields after the command name, which is in parentheses
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// loadavg is the machine's 1-minute load average.
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
}

// serverSide summarises the webhook's own admission latency histogram: the
// share of admissions answered within each bucket, without TLS, HTTP and the
// load generator's own CPU use on this machine.
func serverSide(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	counts := map[string]float64{}
	var total float64
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "oci_transport_admission_duration_seconds_bucket{") || !strings.Contains(line, `outcome="converted"`) {
			continue
		}
		le := line[strings.Index(line, `le="`)+4:]
		le = le[:strings.Index(le, `"`)]
		v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		counts[le] = v
		if le == "+Inf" {
			total = v
		}
	}
	if total == 0 {
		return "no data"
	}
	var parts []string
	for _, le := range []string{"0.001", "0.0025", "0.005", "0.01"} {
		parts = append(parts, fmt.Sprintf("%.1f%% <= %sms", 100*counts[le]/total, strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", mustFloat(le)*1000), "0"), ".")))
	}
	return strings.Join(parts, ", ")
}

func mustFloat(s string) float64 { f, _ := strconv.ParseFloat(s, 64); return f }

// memory: RSS now and at peak, and of RSS the anonymous part (heap,
// stacks) and the file part (the binary's pages).
type memory struct{ rss, hwm, anon, file string }

func (m memory) String() string {
	return fmt.Sprintf("%s (anon %s, file %s)", m.rss, m.anon, m.file)
}

// rss reads the resident set size (now and peak) of pid from /proc.
func rss(t *testing.T, pid int) memory {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	var m memory
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		v := fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		switch f[0] {
		case "VmRSS:":
			m.rss = v
		case "VmHWM:":
			m.hwm = v
		case "RssAnon:":
			m.anon = v
		case "RssFile:":
			m.file = v
		}
	}
	return m
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// createTasks fills the namespace with n Tasks of a realistic size (a few
// steps with scripts, params, results, workspaces).
func createTasks(t *testing.T, e *env, n int) {
	t.Helper()
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs <- e.c.Create(context.Background(), benchTask(e.ns, i))
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func benchTask(ns string, i int) *v1.Task {
	script := strings.Repeat(fmt.Sprintf("echo step of task %d doing some work in $(workspaces.source.path)\n", i), 8)
	return &v1.Task{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("task-%04d", i), Namespace: ns,
			Labels: map[string]string{"app.kubernetes.io/version": "0.9"}},
		Spec: v1.TaskSpec{
			Params:     v1.ParamSpecs{{Name: "revision", Type: v1.ParamTypeString}, {Name: "flags", Type: v1.ParamTypeArray}},
			Workspaces: []v1.WorkspaceDeclaration{{Name: "source"}},
			Results:    []v1.TaskResult{{Name: "digest"}},
			Steps: []v1.Step{
				{Name: "prepare", Image: "busybox", Script: script},
				{Name: "build", Image: "golang", Script: script, Env: []corev1.EnvVar{{Name: "GOFLAGS", Value: "-mod=vendor"}}},
				{Name: "report", Image: "busybox", Script: script},
			},
		},
	}
}

// reviewBody is an AdmissionReview of the inline 13-task run: a release-like
// DAG (clone, fan-out to builds and tests, fan-in to publish, finally).
func reviewBody(t *testing.T, ns string) []byte {
	t.Helper()
	run := webhooktest.ReleaseRun(ns)
	raw, err := json.Marshal(run)
	require.NoError(t, err)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("bench"),
			Kind:      metav1.GroupVersionKind{Group: "tekton.dev", Version: "v1", Kind: "PipelineRun"},
			Resource:  metav1.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"},
			Namespace: ns,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	require.NoError(t, err)
	return body
}

// series collects the latencies (and failures) of one kind of request.
type series struct {
	mu        sync.Mutex
	latencies []time.Duration
	failures  []error
}

func newSeries() *series { return &series{} }

func (s *series) add(took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures = append(s.failures, err)
		return
	}
	s.latencies = append(s.latencies, took)
}

// failed says how many requests failed and the first error, or "".
func (s *series) failed() string {
	if len(s.failures) == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d failed, first: %v", len(s.failures), len(s.failures)+len(s.latencies), s.failures[0])
}

func (s *series) percentiles() string {
	slices.Sort(s.latencies)
	if len(s.latencies) == 0 {
		return "no data"
	}
	pct := func(p float64) time.Duration {
		return s.latencies[int(p*float64(len(s.latencies)-1))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", pct(.50), pct(.90), pct(.99), s.latencies[len(s.latencies)-1].Round(10*time.Microsecond))
}

// tokenIssuer returns a request for a registry token as an injected step
// makes it: the step's projected ServiceAccount token (TokenRequest API,
// the token service's audience) as the Basic password, a pull,push scope on
// a repository of the run's namespace.
func tokenIssuer(t *testing.T, e *env, addr string) func() (time.Duration, error) {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bench-steps", Namespace: e.ns}}
	require.NoError(t, e.c.Create(ctx, sa))
	exp := int64(3600)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{registryauth.DefaultAudience}, ExpirationSeconds: &exp,
	}}
	require.NoError(t, e.c.SubResource("token").Create(ctx, sa, tr))
	saToken := tr.Status.Token
	require.NotEmpty(t, saToken)
	// the webhook runs with the default --repository-prefix
	url := fmt.Sprintf("http://%s/token?service=%s&scope=repository:tekton-oci-transport/%s/bench/ws:pull,push",
		addr, registryauth.DefaultService, e.ns)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	return func() (time.Duration, error) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.SetBasicAuth("step", saToken)
		s := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		took := time.Since(s)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"token"`)) {
			return 0, fmt.Errorf("no token (%d): %.300s", resp.StatusCode, data)
		}
		return took, nil
	}
}
