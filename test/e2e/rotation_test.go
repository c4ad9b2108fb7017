package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/selfcert"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/server"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// rotation are the knobs of TestSelfManagedRotation: cert-controller's
// lifetimes shortened so that the CA is replaced every CAValidity -
// RenewBefore (10 s) and the serving certificate in between every Validity
// - RenewBefore (4 s).
var rotation = selfcert.Config{
	CAValidity: 20 * time.Second, Validity: 14 * time.Second, RenewBefore: 10 * time.Second,
	CheckInterval: 250 * time.Millisecond,
	Propagation:   time.Second, Retire: 3 * time.Second,
}

// rotationTraffic is how long admissions run; it covers three CA rotations.
const rotationTraffic = 32 * time.Second

// TestSelfManagedRotation: admissions go through the real API server without
// a pause while the self-managed TLS rotates its CA and its certificate, with
// failurePolicy Fail, so a TLS error would fail a request. None may fail,
// every one is converted, and what is served and published is watched:
//   - every TLS handshake verifies against the caBundle stored just before;
//   - the caBundle only ever grows by the new CA or shrinks by old ones;
//   - a CA is served only after it has been in the caBundle for Propagation,
//     and the CA before it leaves the caBundle only after that.
func TestSelfManagedRotation(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	const labelKey = "rotation.oci-transport.tekton.dev/enabled"
	port, err := freePort()
	require.NoError(t, err)
	hp, err := freePort()
	require.NoError(t, err)
	name := "tekton-oci-transport-rotation-" + e.ns
	mwc := registration.MutatingWebhookConfiguration(registration.Values{
		Name: name, LabelKey: labelKey, ResolutionTimeout: resolutionTimeout,
		URL:           fmt.Sprintf("https://localhost:%d%s", port, registration.Path),
		FailurePolicy: admissionregistrationv1.Fail,
	})
	require.NoError(t, e.c.Create(ctx, mwc))
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), mwc) })

	sm := rotation
	sm.SecretNamespace, sm.SecretName = e.ns, "rotation-tls"
	sm.ServiceName, sm.ServiceNamespace = "localhost", e.ns
	sm.WebhookConfiguration = name
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		err := server.Run(ctx, server.Config{
			Rest: suite.cfg, Host: "127.0.0.1", Port: port, CertDir: t.TempDir(),
			MetricsAddr: "0", HealthAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(hp)),
			LabelKey: labelKey, Options: options, ResolutionTimeout: resolutionTimeout,
			SelfManaged: &sm,
			Log:         logr.Discard(),
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("self-managed server: %v", err)
		}
	}()
	defer func() { cancel(); <-stopped }()
	require.NoError(t, waitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", hp), 60*time.Second))

	w := &tlsWatch{c: e.c, name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		readyz:        fmt.Sprintf("http://127.0.0.1:%d/readyz", hp),
		firstInBundle: map[string]time.Time{}, removed: map[string]time.Time{}, firstServed: map[string]time.Time{}}
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	watchers.Go(func() { w.bundles(watchCtx) })
	watchers.Go(func() { w.dials(watchCtx) })

	// The admissions: 4 clients back to back; every fifth request creates
	// the run, the others are dry runs (same admission, nothing stored).
	var sent, converted atomic.Int64
	var failMu sync.Mutex
	var failures []string
	base := e.load(t, "inline-run.yaml").(*v1.PipelineRun)
	base.Labels = map[string]string{labelKey: "true"}
	deadline := time.Now().Add(rotationTraffic)
	var clients sync.WaitGroup
	for range 4 {
		clients.Go(func() {
			for time.Now().Before(deadline) {
				run := base.DeepCopy()
				var opts []client.CreateOption
				if sent.Add(1)%5 != 0 {
					opts = append(opts, client.DryRunAll)
				}
				err := e.c.Create(ctx, run, opts...)
				switch {
				case err != nil:
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
					failMu.Unlock()
				case run.Annotations[transform.AnnotationConverted] == "":
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %s admitted unconverted: %v", time.Now().Format("15:04:05.000"), run.Name, run.Annotations))
					failMu.Unlock()
				default:
					converted.Add(1)
				}
			}
		})
	}
	clients.Wait()
	stopWatch()
	watchers.Wait()

	w.mu.Lock()
	defer w.mu.Unlock()
	cas := len(w.firstInBundle)
	t.Logf("%d admission requests (%d converted, %d failed) over %s; %d CAs published (%d CA rotations), %d serving certificates served (%d renewals), %d caBundle changes, %d TLS handshakes checked (%d failed), /readyz not ready %d times",
		sent.Load(), converted.Load(), len(failures), rotationTraffic, cas, cas-1, len(w.leaves), len(w.leaves)-1, w.changes, w.dialed, len(w.dialFailures), len(w.unready))
	require.Empty(t, failures, "admissions failed across a rotation")
	require.Equal(t, sent.Load(), converted.Load())
	require.Empty(t, w.dialFailures, "a served certificate was not trusted by the caBundle stored just before")
	require.Empty(t, w.violations)
	require.Empty(t, w.unready, "one replica is ready throughout: the CA it serves stays in the caBundle")
	require.GreaterOrEqual(t, cas-1, 2, "at least two CA rotations under traffic")
	require.Greater(t, len(w.leaves), cas, "serving certificates renewed under the same CA too")
	// The order: each new CA served only after Propagation in the bundle
	// (less the watchers' polling), the CA before it removed only after.
	for fp, served := range w.firstServed {
		published, ok := w.firstInBundle[fp]
		require.True(t, ok, "CA %s served but never seen in the caBundle", fp[:12])
		if published.Equal(w.firstCA) {
			continue
		}
		require.GreaterOrEqual(t, served.Sub(published), sm.Propagation-200*time.Millisecond,
			"CA %s served %s after it was published", fp[:12], served.Sub(published))
	}
	for fp, gone := range w.removed {
		next := w.successor(fp)
		require.NotEmpty(t, next, "CA %s removed without a successor", fp[:12])
		served, ok := w.firstServed[next]
		require.True(t, ok && served.Before(gone), "CA %s removed at %s before its successor %s was served", fp[:12], gone, next[:12])
	}
}

// tlsWatch records, from outside the server, what is published in the
// caBundle and what is served.
type tlsWatch struct {
	c      client.Client
	name   string
	addr   string
	readyz string

	mu            sync.Mutex
	firstCA       time.Time            // when the first CA was seen
	firstInBundle map[string]time.Time // CA fingerprint: first seen in every webhook's caBundle
	removed       map[string]time.Time // CA fingerprint: first seen gone again
	order         []string             // CAs in the order they appeared
	changes       int
	violations    []string
	firstServed   map[string]time.Time // CA fingerprint: first handshake with a certificate it signed
	leaves        []string
	dialed        int
	dialFailures  []string
	unready       []string // /readyz answers other than 200
}

func (w *tlsWatch) bundle(ctx context.Context) ([]byte, []string, error) {
	got := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := w.c.Get(ctx, client.ObjectKey{Name: w.name}, got); err != nil {
		return nil, nil, err
	}
	raw := got.Webhooks[0].ClientConfig.CABundle
	for _, wh := range got.Webhooks[1:] {
		if string(wh.ClientConfig.CABundle) != string(raw) {
			return raw, nil, fmt.Errorf("the webhooks' caBundles differ")
		}
	}
	var fps []string
	for rest := raw; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		fps = append(fps, fingerprint(block.Bytes))
	}
	return raw, fps, nil
}

// bundles polls the configuration: every change adds the Secret's new CA or
// removes old ones, never both, and a removed CA never comes back.
func (w *tlsWatch) bundles(ctx context.Context) {
	var prev []string
	for ctx.Err() == nil {
		_, fps, err := w.bundle(ctx)
		now := time.Now()
		w.mu.Lock()
		switch {
		case err != nil && ctx.Err() == nil:
			w.violations = append(w.violations, err.Error())
		case err == nil && !slices.Equal(fps, prev) && len(fps) > 0:
			var added, removed []string
			for _, fp := range fps {
				if !slices.Contains(prev, fp) {
					added = append(added, fp)
				}
			}
			for _, fp := range prev {
				if !slices.Contains(fps, fp) {
					removed = append(removed, fp)
				}
			}
			if len(added) > 0 && len(removed) > 0 {
				w.violations = append(w.violations, fmt.Sprintf("caBundle %v replaced by %v in one step", prev, fps))
			}
			for _, fp := range added {
				if _, ok := w.removed[fp]; ok {
					w.violations = append(w.violations, fmt.Sprintf("CA %s came back", fp[:12]))
				}
				w.firstInBundle[fp] = now
				w.order = append(w.order, fp)
				if w.firstCA.IsZero() {
					w.firstCA = now
				}
			}
			for _, fp := range removed {
				w.removed[fp] = now
			}
			w.changes++
			prev = fps
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// dials opens a new TLS connection every 50 ms that trusts exactly the
// caBundle stored just before: what is served must always verify. It asks
// /readyz each time too.
func (w *tlsWatch) dials(ctx context.Context) {
	for ctx.Err() == nil {
		if err := readyOnce(ctx, w.readyz); err != nil && ctx.Err() == nil {
			w.mu.Lock()
			w.unready = append(w.unready, time.Now().Format("15:04:05.000")+": "+err.Error())
			w.mu.Unlock()
		}
		read := time.Now()
		raw, _, err := w.bundle(ctx)
		if err == nil && len(raw) > 0 {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(raw)
			d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
			conn, err := d.DialContext(ctx, "tcp", w.addr)
			now := time.Now()
			w.mu.Lock()
			w.dialed++
			if err != nil {
				// A sample that took Propagation/2 proves nothing: the
				// caBundle may have changed since it was read.
				if ctx.Err() == nil && now.Sub(read) < rotation.Propagation/2 {
					w.dialFailures = append(w.dialFailures, now.Format("15:04:05.000")+": "+err.Error())
				}
			} else {
				chain := conn.(*tls.Conn).ConnectionState().VerifiedChains[0]
				leaf, ca := fingerprint(chain[0].Raw), fingerprint(chain[len(chain)-1].Raw)
				if !slices.Contains(w.leaves, leaf) {
					w.leaves = append(w.leaves, leaf)
				}
				if _, ok := w.firstServed[ca]; !ok {
					w.firstServed[ca] = now
				}
				conn.Close()
			}
			w.mu.Unlock()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// successor is the CA that appeared after fp.
func (w *tlsWatch) successor(fp string) string {
	i := slices.Index(w.order, fp)
	if i < 0 || i+1 >= len(w.order) {
		return ""
	}
	return w.order[i+1]
}

// readyOnce asks /readyz once.
func readyOnce(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
