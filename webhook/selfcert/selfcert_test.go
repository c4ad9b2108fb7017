package selfcert

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const dnsName = "svc.ns.svc"

// issue makes a CA and a serving certificate the way cert-controller does
// (its own functions), valid from notBefore for the given lifetimes.
func issue(t *testing.T, notBefore time.Time, caLife, life time.Duration) *pair {
	t.Helper()
	caArt, err := testRotator.CreateCACert(notBefore, notBefore.Add(caLife))
	require.NoError(t, err)
	return leaf(t, caArt, notBefore, life)
}

var testRotator = &rotator.CertRotator{CAName: "test-ca", CAOrganization: "test", DNSName: dnsName,
	ExtKeyUsages: &[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}

// leaf is a serving certificate signed by caArt.
func leaf(t *testing.T, caArt *rotator.KeyPairArtifacts, notBefore time.Time, life time.Duration) *pair {
	t.Helper()
	cert, key, err := testRotator.CreateCertPEM(caArt, notBefore, notBefore.Add(life))
	require.NoError(t, err)
	p, err := parsePair(map[string][]byte{secretCAKey: caArt.CertPEM, "tls.crt": cert, "tls.key": key},
		"tls.crt", "tls.key", dnsName, notBefore.Add(time.Second))
	require.NoError(t, err)
	p.art = caArt
	return p
}

// replica is one webhook replica's publisher state, driven step by step
// with a clock of its own; the bundle is shared like the configuration.
type replica struct {
	trust  trust
	served *servedCert
}

func newReplica(tm timing) *replica { return &replica{trust: trust{timing: tm}} }

// step does what one reconcile does: observe, publish, maybe serve. It
// returns the stored bundle after it.
func (r *replica) step(s stored, p *pair, now time.Time) stored {
	r.trust.observe(s, now)
	var servedCA *ca
	if r.served != nil {
		servedCA = &r.served.ca
	}
	want := r.trust.desired(s, p.ca, servedCA, now)
	if !s.equal(encodeBundle(want), raw(s)) {
		s = stored{want, want}
		r.trust.observe(s, now)
	}
	if r.trust.switchTo(s, p, r.served, now) {
		r.served = &servedCert{ca: p.ca, leaf: p.leaf}
	}
	return s
}

func raw(s stored) [][]byte {
	out := make([][]byte, len(s))
	for i, b := range s {
		out[i] = encodeBundle(b)
	}
	return out
}

func fps(cas []ca) []string {
	out := make([]string, len(cas))
	for i, c := range cas {
		out[i] = c.fp
	}
	return out
}

var tm = timing{Propagation: time.Minute, Retire: time.Hour}

// TestRotationOrder: the new CA is published beside the old one, served
// only after Propagation, the old one dropped after Retire; readiness holds
// throughout.
func TestRotationOrder(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	p1 := issue(t, t0.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	r := newReplica(tm)

	// First install: the bundle is empty; the CA is published and served at
	// once (nothing else could be served), and it is ready.
	s := r.step(stored{nil, nil}, p1, t0)
	require.Equal(t, []string{p1.ca.fp}, fps(s[0]))
	require.Equal(t, p1.leaf, r.served.leaf)
	require.NoError(t, r.trust.ready(s, r.served, t0))

	// The CA is rotated: cert-controller wrote a new CA and certificate.
	t1 := t0.Add(24 * time.Hour)
	p2 := issue(t, t1.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	s = r.step(s, p2, t1)
	require.Equal(t, []string{p2.ca.fp, p1.ca.fp}, fps(s[0]), "new CA first, old one kept")
	require.Equal(t, p1.leaf, r.served.leaf, "the old certificate is still served")
	require.NoError(t, r.trust.ready(s, r.served, t1))
	require.Equal(t, tm.Propagation, r.trust.trustedIn(s, p2.ca, t1))

	s = r.step(s, p2, t1.Add(tm.Propagation-time.Second))
	require.Equal(t, p1.leaf, r.served.leaf, "not before Propagation")

	t2 := t1.Add(tm.Propagation)
	s = r.step(s, p2, t2)
	require.Equal(t, p2.leaf, r.served.leaf, "served once the API server had Propagation")
	require.Len(t, s[0], 2, "the old CA stays until Retire")
	require.NoError(t, r.trust.ready(s, r.served, t2))
	require.Equal(t, tm.Retire-tm.Propagation, r.trust.retireIn(s, p2.ca, t2))

	s = r.step(s, p2, t1.Add(tm.Retire))
	require.Equal(t, []string{p2.ca.fp}, fps(s[0]), "retired")
	require.NoError(t, r.trust.ready(s, r.served, t1.Add(tm.Retire)))
}

// TestRotationTwoReplicas: a replica never drops the CA another one serves
// before Retire, nor a CA newer than its own view of the Secret.
func TestRotationTwoReplicas(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	p1 := issue(t, t0.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	a, b := newReplica(tm), newReplica(tm)
	s := a.step(stored{nil, nil}, p1, t0)
	s = b.step(s, p1, t0)

	// a and b have served p1 for longer than Retire when a sees the new
	// Secret and publishes p2; b still reads the old Secret (its cache
	// lags): it keeps the newer CA, though it would retire older ones.
	t1 := t0.Add(2 * tm.Retire)
	p2 := issue(t, t1.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	s = a.step(s, p2, t1)
	s = b.step(s, p1, t1)
	require.Equal(t, []string{p2.ca.fp, p1.ca.fp}, fps(s[0]))
	s = b.step(s, p1, t1.Add(tm.Propagation/2))
	require.Equal(t, []string{p2.ca.fp, p1.ca.fp}, fps(s[0]))
	require.Equal(t, p1.leaf, b.served.leaf)

	// b sees the new Secret; both switch after Propagation, a retires p1
	// after Retire (b never drops p1 while a may still serve it).
	s = b.step(s, p2, t1.Add(tm.Propagation-time.Second))
	require.Equal(t, p1.leaf, b.served.leaf)
	s = b.step(s, p2, t1.Add(tm.Propagation))
	s = a.step(s, p2, t1.Add(tm.Propagation))
	require.Equal(t, p2.leaf, a.served.leaf)
	require.Equal(t, p2.leaf, b.served.leaf)
	require.Len(t, s[0], 2)
	s = a.step(s, p2, t1.Add(tm.Retire))
	require.Equal(t, []string{p2.ca.fp}, fps(s[0]))
	require.NoError(t, b.trust.ready(s, b.served, t1.Add(tm.Retire)))
}

// TestRestartDuringRotation: a replica that starts while two CAs are in the
// bundle cannot know how long the new one has been there: it writes the
// certificate (it served nothing) and is ready after Propagation.
func TestRestartDuringRotation(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	p1 := issue(t, t0.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	p2 := issue(t, t0, 100*24*time.Hour, 50*24*time.Hour)
	s := stored{{p2.ca, p1.ca}, {p2.ca, p1.ca}}
	r := newReplica(tm)
	s = r.step(s, p2, t0)
	require.Equal(t, p2.leaf, r.served.leaf)
	require.Error(t, r.trust.ready(s, r.served, t0))
	s = r.step(s, p2, t0.Add(tm.Propagation))
	require.NoError(t, r.trust.ready(s, r.served, t0.Add(tm.Propagation)))
}

// TestRenewalUnderSameCA: a certificate renewed under the CA in use is
// served at once, even while the replica would still wait for a new CA.
func TestRenewalUnderSameCA(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	p0 := issue(t, t0.Add(-2*time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	p1 := issue(t, t0.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	s := stored{{p1.ca, p0.ca}, {p1.ca, p0.ca}}
	r := newReplica(tm)
	s = r.step(s, p1, t0)
	p1b := leaf(t, p1.art, t0, 50*24*time.Hour)
	s = r.step(s, p1b, t0.Add(time.Second))
	require.Equal(t, p1b.leaf, r.served.leaf)
	require.Len(t, s[0], 2, "nothing retired")
}

// TestBundleReset: a caBundle emptied (a re-applied manifest) gets the CA
// back, trusted at once since it is the only one.
func TestBundleReset(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	p1 := issue(t, t0.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	r := newReplica(tm)
	s := r.step(stored{nil, nil}, p1, t0)
	r.trust.observe(stored{nil, nil}, t0.Add(time.Minute))
	require.Error(t, r.trust.ready(stored{nil, nil}, r.served, t0.Add(time.Minute)))
	s = r.step(stored{nil, nil}, p1, t0.Add(time.Minute))
	require.Equal(t, []string{p1.ca.fp}, fps(s[0]))
	require.NoError(t, r.trust.ready(s, r.served, t0.Add(time.Minute)))
}

// TestExpiredAndForeign: an expired CA, a certificate that is no CA and
// other blocks leave the bundle.
func TestExpiredAndForeign(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	old := issue(t, t0.Add(-48*time.Hour), 24*time.Hour, 24*time.Hour)
	p := issue(t, t0.Add(-time.Hour), 100*24*time.Hour, 50*24*time.Hour)
	junk := append(encodeBundle([]ca{old.ca}), old.cert...)
	junk = append(junk, []byte("-----BEGIN GARBAGE-----\nAAAA\n-----END GARBAGE-----\n")...)
	parsed := parseBundle(junk)
	require.Equal(t, []string{old.ca.fp}, fps(parsed), "the leaf and the garbage are left out")
	r := newReplica(tm)
	s := r.step(stored{parsed, parsed}, p, t0)
	require.Equal(t, []string{p.ca.fp}, fps(s[0]))
}

func TestParsePair(t *testing.T) {
	t0 := time.Now()
	a := issue(t, t0.Add(-time.Hour), 24*time.Hour, 12*time.Hour)
	b := issue(t, t0.Add(-time.Hour), 24*time.Hour, 12*time.Hour)
	data := func(caPEM, cert, key []byte) map[string][]byte {
		return map[string][]byte{secretCAKey: caPEM, "tls.crt": cert, "tls.key": key}
	}
	_, err := parsePair(data(a.ca.pem(), a.cert, a.key), "tls.crt", "tls.key", dnsName, t0)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		data map[string][]byte
		dns  string
		at   time.Time
	}{
		"empty":          {data(nil, nil, nil), dnsName, t0},
		"key mismatch":   {data(a.ca.pem(), a.cert, b.key), dnsName, t0},
		"other CA":       {data(b.ca.pem(), a.cert, a.key), dnsName, t0},
		"other name":     {data(a.ca.pem(), a.cert, a.key), "other.ns.svc", t0},
		"expired":        {data(a.ca.pem(), a.cert, a.key), dnsName, t0.Add(13 * time.Hour)},
		"not yet issued": {data(a.ca.pem(), a.cert, a.key), dnsName, t0.Add(-2 * time.Hour)},
	} {
		_, err := parsePair(tc.data, "tls.crt", "tls.key", tc.dns, tc.at)
		require.Error(t, err, name)
	}
}

func TestValidate(t *testing.T) {
	base := Config{SecretNamespace: "ns", SecretName: "s", ServiceName: "svc", ServiceNamespace: "ns",
		WebhookConfiguration: "w", CertDir: "/tmp/x", Rest: &rest.Config{}}
	c := base
	c.defaults()
	require.NoError(t, c.validate())
	for name, mod := range map[string]func(*Config){
		"renew before validity": func(c *Config) { c.RenewBefore = c.Validity },
		"CA shorter than cert":  func(c *Config) { c.CAValidity = c.Validity - time.Hour },
		"retire before served":  func(c *Config) { c.Retire = c.Propagation },
		"no secret":             func(c *Config) { c.SecretName = "" },
	} {
		c := base
		c.defaults()
		mod(&c)
		require.Error(t, c.validate(), name)
	}
}

// TestNarrowed: lists and watches of the namespace's Secrets ask for ours
// alone; nothing else changes.
func TestNarrowed(t *testing.T) {
	var mu sync.Mutex
	var got []*url.URL
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[]}`))
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(narrowed(&rest.Config{Host: srv.URL}, "ns", "tls"))
	require.NoError(t, err)
	ctx := context.Background()
	_, _ = cs.CoreV1().Secrets("ns").List(ctx, metav1.ListOptions{})
	_, _ = cs.CoreV1().Secrets("ns").List(ctx, metav1.ListOptions{FieldSelector: "type=x"})
	_, _ = cs.CoreV1().Secrets("other").List(ctx, metav1.ListOptions{})
	_, _ = cs.CoreV1().Secrets("ns").Get(ctx, "tls", metav1.GetOptions{})
	_, _ = cs.CoreV1().ConfigMaps("ns").List(ctx, metav1.ListOptions{})
	_, _ = cs.CoreV1().Secrets("ns").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls"}}, metav1.CreateOptions{})
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 6)
	require.Equal(t, "metadata.name=tls", got[0].Query().Get("fieldSelector"))
	require.Equal(t, "type=x", got[1].Query().Get("fieldSelector"), "a selector of the caller's own stays")
	for _, u := range got[2:] {
		require.False(t, u.Query().Has("fieldSelector"), u.String())
	}
}
