// Package selfcert is the TLS mode for clusters without cert-manager.
//
// github.com/open-policy-agent/cert-controller (the rotator Gatekeeper uses)
// generates the CA and the serving certificate, keeps both in one Secret
// that every replica shares, and renews them before they expire. It would
// also inject its CA into the webhook configuration, but that is the step
// it does in the wrong order for a rotation of the CA: it writes the new CA
// and the new certificate together and sets the caBundle to the new CA
// alone, so until every replica serves the new certificate, and again until
// the API server reads the new caBundle, TLS fails. So it injects nothing,
// and this package publishes and serves, per replica:
//
//  1. publish: the Secret's CA is added to the caBundle of every webhook of
//     our own MutatingWebhookConfiguration (and no other), beside the CAs
//     already there;
//  2. serve: the Secret's certificate is written into the server's
//     certificate directory once its CA has been in the caBundle for
//     Propagation (the API server reads configurations through an informer,
//     a moment after they are stored); a certificate renewed under the CA
//     already served is written at once;
//  3. retire: the superseded CAs are dropped from the caBundle once the new
//     one has been there for Retire and is served.
//
// Each replica reports ready only while the certificate it serves is in
// place and its CA is in the caBundle the API server uses.
//
// A deleted Secret drops nothing: the replicas keep serving what they serve
// and the caBundle keeps its CA; the deletion is logged as an error, the
// Secret is created again (empty), cert-controller fills it with a new CA,
// and that new CA goes through the three steps above like any rotation.
package selfcert

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// secretCAKey is where cert-controller keeps the CA in the Secret (its key
// is ca.key); the serving certificate and key are under the certificate
// directory's file names (tls.crt and tls.key by default).
const secretCAKey = "ca.crt"

// Defaults of Config.
const (
	DefaultCAValidity    = 10 * 365 * 24 * time.Hour
	DefaultValidity      = 365 * 24 * time.Hour
	DefaultRenewBefore   = 90 * 24 * time.Hour
	DefaultCheckInterval = time.Hour
	DefaultPropagation   = time.Minute
	DefaultRetire        = time.Hour
	DefaultStartTimeout  = 2 * time.Minute
)

// Config of the self-managed mode.
type Config struct {
	// Secret that stores the CA and the serving certificate.
	SecretNamespace, SecretName string
	// ServiceName.ServiceNamespace.svc is the name the API server dials.
	ServiceName, ServiceNamespace string
	// WebhookConfiguration is the MutatingWebhookConfiguration whose caBundle
	// is kept current.
	WebhookConfiguration string

	// CAValidity and Validity are the lifetimes of the CA and of the serving
	// certificate; each is renewed when it has less than RenewBefore left
	// (checked every CheckInterval and whenever the Secret changes).
	// cert-controller's CaCertDuration, ServerCertDuration,
	// LookaheadInterval and RotationCheckFrequency; zero means the Default.
	CAValidity, Validity, RenewBefore, CheckInterval time.Duration
	// Propagation and Retire order a rotation of the CA (see the package
	// documentation); Retire must exceed Propagation. Zero means the Default.
	Propagation, Retire time.Duration
	// StartTimeout bounds Start's wait for the first certificate.
	StartTimeout time.Duration

	// Set by the server.
	Rest                       *rest.Config
	CertDir, CertName, KeyName string
	Log                        logr.Logger
}

func (c *Config) defaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.CAValidity, DefaultCAValidity}, {&c.Validity, DefaultValidity}, {&c.RenewBefore, DefaultRenewBefore},
		{&c.CheckInterval, DefaultCheckInterval}, {&c.Propagation, DefaultPropagation}, {&c.Retire, DefaultRetire},
		{&c.StartTimeout, DefaultStartTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.CertName == "" {
		c.CertName = corev1.TLSCertKey
	}
	if c.KeyName == "" {
		c.KeyName = corev1.TLSPrivateKeyKey
	}
}

func (c *Config) validate() error {
	var errs []error
	for what, v := range map[string]string{
		"secret namespace": c.SecretNamespace, "secret name": c.SecretName, "service name": c.ServiceName,
		"service namespace": c.ServiceNamespace, "webhook configuration": c.WebhookConfiguration, "certificate directory": c.CertDir,
	} {
		if v == "" {
			errs = append(errs, fmt.Errorf("no %s", what))
		}
	}
	if c.Rest == nil {
		errs = append(errs, errors.New("no Kubernetes configuration"))
	}
	if c.RenewBefore >= c.Validity {
		errs = append(errs, fmt.Errorf("renewal %s before expiry must be shorter than the validity %s", c.RenewBefore, c.Validity))
	}
	if c.CAValidity < c.Validity {
		errs = append(errs, fmt.Errorf("the CA's validity %s must not be shorter than the certificate's %s", c.CAValidity, c.Validity))
	}
	if c.Retire <= c.Propagation {
		errs = append(errs, fmt.Errorf("retire %s must exceed propagation %s", c.Retire, c.Propagation))
	}
	return errors.Join(errs...)
}

func (c *Config) dnsNames() []string {
	svc := c.ServiceName + "." + c.ServiceNamespace + ".svc"
	return []string{svc, svc + ".cluster.local", c.ServiceName + "." + c.ServiceNamespace, c.ServiceName}
}

// instances numbers the rotations of this process: controller-runtime
// wants each controller name once (the e2e tests run several servers in one
// process).
var instances atomic.Int64

func controllerName(base string, instance int64) string {
	if instance > 1 {
		return fmt.Sprintf("%s-%d", base, instance)
	}
	return base
}

// Start runs the rotation in a manager of its own until ctx ends, and
// returns once the first certificate is in CertDir (the webhook server
// needs it to start): whether it is trusted yet is what Running.Ready
// answers.
func (c Config) Start(ctx context.Context) (*Running, error) {
	c.defaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	rc := narrowed(c.Rest, c.SecretNamespace, c.SecretName)
	direct, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	if err := direct.Get(ctx, types.NamespacedName{Name: c.WebhookConfiguration}, &admissionregistrationv1.MutatingWebhookConfiguration{}); err != nil {
		return nil, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", c.WebhookConfiguration, err)
	}
	secretKey := types.NamespacedName{Namespace: c.SecretNamespace, Name: c.SecretName}
	// cert-controller fills the Secret but does not create it.
	if err := createSecret(ctx, direct, secretKey); err != nil {
		return nil, err
	}

	mgr, err := manager.New(rc, manager.Options{
		Scheme:                 scheme,
		Logger:                 c.Log,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{c.SecretNamespace: {}},
				Field:      fields.OneTermEqualSelector("metadata.name", c.SecretName),
			},
			&admissionregistrationv1.MutatingWebhookConfiguration{}: {
				Field: fields.OneTermEqualSelector("metadata.name", c.WebhookConfiguration),
			},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	names, instance := c.dnsNames(), instances.Add(1)
	rot := &rotator.CertRotator{
		SecretKey:      secretKey,
		CertDir:        c.CertDir,
		CertName:       c.CertName,
		KeyName:        c.KeyName,
		CAName:         "tekton-oci-transport-ca",
		CAOrganization: "tekton-oci-transport",
		DNSName:        names[0],
		ExtraDNSNames:  names[1:],
		IsReady:        make(chan struct{}),
		// No Webhooks: the publisher injects the CA, in the safe order.
		CaCertDuration:         c.CAValidity,
		ServerCertDuration:     c.Validity,
		LookaheadInterval:      c.RenewBefore,
		RotationCheckFrequency: c.CheckInterval,
		ControllerName:         controllerName("selfcert-rotator", instance),
	}
	if err := rotator.AddRotator(mgr, rot); err != nil {
		return nil, fmt.Errorf("adding cert-controller's rotator: %w", err)
	}
	p := &publisher{
		cfg: c, secretKey: secretKey, reader: mgr.GetCache(), writer: mgr.GetClient(),
		trust:   trust{timing: timing{Propagation: c.Propagation, Retire: c.Retire}},
		now:     time.Now,
		started: make(chan struct{}),
		log:     c.Log,
	}
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: secretKey}}
	})
	if err := builder.ControllerManagedBy(mgr).
		Named(controllerName("selfcert-publisher", instance)).
		Watches(&corev1.Secret{}, one).
		Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, one).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(p); err != nil {
		return nil, fmt.Errorf("adding the caBundle publisher: %w", err)
	}

	mctx, stop := context.WithCancel(ctx)
	r := &Running{p: p, done: make(chan error, 1), stop: stop}
	go func() { r.done <- mgr.Start(mctx) }()
	go func() {
		select {
		case <-rot.IsReady:
			c.Log.V(1).Info("cert-controller's rotator is ready")
		case <-ctx.Done():
		}
	}()
	timeout := time.NewTimer(c.StartTimeout)
	defer timeout.Stop()
	select {
	case <-p.started:
		return r, nil
	case err := <-r.done:
		stop()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("certificate rotation stopped: %w", err)
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	case <-timeout.C:
		stop()
		return nil, fmt.Errorf("no serving certificate after %s: %w", c.StartTimeout, p.lastError())
	}
}

func createSecret(ctx context.Context, c client.Client, key types.NamespacedName) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: key.Namespace, Name: key.Name,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "tekton-oci-transport"},
	}}
	err := c.Create(ctx, s)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating secret %s: %w", key, err)
	}
	return nil
}

// Running is the rotation after Start.
type Running struct {
	p    *publisher
	done chan error
	stop context.CancelFunc // ends the rotation's manager
}

// Ready is a readiness check (healthz.Checker): nil while the certificate in
// CertDir is valid and its CA is in the caBundle the API server uses.
func (r *Running) Ready(*http.Request) error { return r.p.ready() }

// Start is a manager.Runnable: it returns when ctx ends, or with an error
// when the rotation stops first, so that the server stops with it.
func (r *Running) Start(ctx context.Context) error {
	defer r.stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-r.done:
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("self-managed TLS: %w", err)
	}
}

// publisher is the reconciler of the order: publish, serve, retire.
type publisher struct {
	cfg       Config
	secretKey types.NamespacedName
	reader    client.Reader
	writer    client.Client
	now       func() time.Time
	log       logr.Logger

	started     chan struct{} // closed once the first certificate is written
	startedOnce sync.Once

	mu      sync.Mutex
	trust   trust
	stored  stored
	served  *servedCert
	lastErr error
	missing bool // the Secret was found deleted (logged once)
}

func (p *publisher) ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.trust.ready(p.stored, p.served, p.now())
}

func (p *publisher) lastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastErr == nil {
		return errors.New("no error either: is cert-controller filling the Secret?")
	}
	return p.lastErr
}

func (p *publisher) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	res, err := p.reconcile(ctx)
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
	return res, err
}

func (p *publisher) reconcile(ctx context.Context) (reconcile.Result, error) {
	resync := reconcile.Result{RequeueAfter: min(p.cfg.CheckInterval, time.Minute)}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := p.reader.Get(ctx, types.NamespacedName{Name: p.cfg.WebhookConfiguration}, mwc); err != nil {
		return resync, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", p.cfg.WebhookConfiguration, err)
	}
	if len(mwc.Webhooks) == 0 {
		return resync, fmt.Errorf("MutatingWebhookConfiguration %s has no webhooks", p.cfg.WebhookConfiguration)
	}
	now := p.now()
	p.mu.Lock()
	p.stored = parseStored(mwc)
	p.trust.observe(p.stored, now)
	p.mu.Unlock()

	secret := &corev1.Secret{}
	err := p.reader.Get(ctx, p.secretKey, secret)
	switch {
	case apierrors.IsNotFound(err):
		return p.secretDeleted(ctx)
	case err != nil:
		return resync, fmt.Errorf("reading secret %s: %w", p.secretKey, err)
	}
	p.mu.Lock()
	if p.missing {
		p.missing = false
		p.log.Info("TLS secret is back", "secret", p.secretKey.String())
	}
	p.mu.Unlock()
	pr, err := parsePair(secret.Data, p.cfg.CertName, p.cfg.KeyName, p.cfg.dnsNames()[0], now)
	if err != nil {
		// cert-controller renews it: its update brings us back.
		p.log.V(1).Info("waiting for cert-controller to fill the secret", "secret", p.secretKey.String(), "reason", err.Error())
		return resync, nil
	}

	// 1. publish (and retire).
	p.mu.Lock()
	var servedCA *ca
	if p.served != nil {
		servedCA = &p.served.ca
	}
	want := p.trust.desired(p.stored, pr.ca, servedCA, now)
	raw := rawBundles(mwc)
	p.mu.Unlock()
	if bundle := encodeBundle(want); !p.stored.equal(bundle, raw) {
		for i := range mwc.Webhooks {
			mwc.Webhooks[i].ClientConfig.CABundle = bundle
		}
		if err := p.writer.Update(ctx, mwc); err != nil {
			// A conflict (another replica, a helm upgrade) brings a new event.
			return resync, fmt.Errorf("updating the caBundle of %s: %w", p.cfg.WebhookConfiguration, err)
		}
		p.log.Info("caBundle updated", "mutatingWebhookConfiguration", p.cfg.WebhookConfiguration,
			"cas", names(want), "secretCA", pr.ca.short())
		p.mu.Lock()
		p.stored = parseStored(mwc)
		p.trust.observe(p.stored, now)
		p.mu.Unlock()
	}

	// 2. serve.
	p.mu.Lock()
	switchTo := p.trust.switchTo(p.stored, pr, p.served, now)
	p.mu.Unlock()
	if switchTo {
		if err := p.write(pr); err != nil {
			return resync, err
		}
		p.mu.Lock()
		first := p.served == nil
		previous := p.served
		p.served = &servedCert{ca: pr.ca, leaf: pr.leaf}
		p.mu.Unlock()
		kv := []any{"ca", pr.ca.short(), "notAfter", pr.leaf.NotAfter.Format(time.RFC3339)}
		if previous != nil {
			kv = append(kv, "previousCA", previous.ca.short())
		}
		p.log.Info("serving certificate written", kv...)
		if first {
			p.startedOnce.Do(func() { close(p.started) })
		}
	}

	// Look again when the next step is due.
	p.mu.Lock()
	defer p.mu.Unlock()
	next := resync.RequeueAfter
	for _, d := range []time.Duration{
		p.trust.trustedIn(p.stored, pr.ca, now),
		p.trust.retireIn(p.stored, pr.ca, now),
	} {
		if d > 0 && d < next {
			next = d
		}
	}
	for _, c := range p.stored.valid(now) {
		if d := c.cert.NotAfter.Sub(now); d > 0 && d < next {
			next = d
		}
	}
	return reconcile.Result{RequeueAfter: next}, nil
}

// secretDeleted: keep serving what is served and keep its CA in the
// caBundle; create the Secret again for cert-controller to fill: the new CA
// is then published beside the one in use, like any rotation.
func (p *publisher) secretDeleted(ctx context.Context) (reconcile.Result, error) {
	p.mu.Lock()
	warn := !p.missing
	p.missing = true
	served := p.served
	p.mu.Unlock()
	if warn {
		kv := []any{"secret", p.secretKey.String()}
		if served != nil {
			kv = append(kv, "servedCA", served.ca.short())
		}
		p.log.Error(fmt.Errorf("secret %s was deleted", p.secretKey),
			"self-managed TLS: creating the Secret again; the certificate in use stays served and its CA stays in the caBundle until a new CA has been published beside it and served", kv...)
	}
	if err := createSecret(ctx, p.writer, p.secretKey); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: time.Second}, nil
}

// write puts the key and then the certificate into CertDir, each replaced
// at once (rename), so the server's file watcher never reads half a file.
func (p *publisher) write(pr *pair) error {
	if err := os.MkdirAll(p.cfg.CertDir, 0o700); err != nil {
		return fmt.Errorf("creating the certificate directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{p.cfg.KeyName, pr.key}, {p.cfg.CertName, pr.cert}} {
		path := filepath.Join(p.cfg.CertDir, f.name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("replacing %s: %w", path, err)
		}
	}
	return nil
}

func parseStored(mwc *admissionregistrationv1.MutatingWebhookConfiguration) stored {
	s := make(stored, len(mwc.Webhooks))
	for i, w := range mwc.Webhooks {
		s[i] = parseBundle(w.ClientConfig.CABundle)
	}
	return s
}

func rawBundles(mwc *admissionregistrationv1.MutatingWebhookConfiguration) [][]byte {
	out := make([][]byte, len(mwc.Webhooks))
	for i, w := range mwc.Webhooks {
		out[i] = w.ClientConfig.CABundle
	}
	return out
}
