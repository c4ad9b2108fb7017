// Package server wires the admission handler into a controller-runtime
// manager: the HTTPS webhook server (certificates from a directory, reloaded
// when they change), the informer cache the handler reads Tasks, Pipelines,
// namespace labels and VerificationPolicy names from, metrics, and health probes. It holds no state of its
// own, so any number of replicas can serve.
package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/selfcert"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Config is everything the server needs; cmd/webhook fills it from flags.
type Config struct {
	Rest *rest.Config

	// Host and Port the HTTPS webhook server listens on.
	Host string
	Port int
	// CertDir holds CertName and KeyName (tls.crt, tls.key by default);
	// changes are picked up without a restart.
	CertDir, CertName, KeyName string
	// SelfManaged, when set, generates the certificates into CertDir,
	// rotates them, and keeps the caBundle of the webhook configuration up
	// to date (readiness includes it).
	SelfManaged *selfcert.Config

	// MetricsAddr and HealthAddr ("0" disables).
	MetricsAddr, HealthAddr string

	LabelKey string
	Strict   bool
	// Mode is webhook.ModeConvert (also when empty) or webhook.ModeAudit.
	Mode              webhook.Mode
	Options           transform.Options
	ResolutionTimeout time.Duration
	// ResolutionPickupTimeout and ResolversNamespace: resolve.Resolver's
	// PickupTimeout and ResolversNamespace (zero: their defaults).
	ResolutionPickupTimeout time.Duration
	ResolversNamespace      string
	// IgnoreVerificationPolicies converts runs in namespaces with a
	// VerificationPolicy too, bypassing Tekton's verification of what is
	// inlined (for clusters without the VerificationPolicy CRD). By default
	// such runs are left unchanged.
	IgnoreVerificationPolicies bool

	Log logr.Logger
}

// Scheme has every type the server reads or writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, admissionregistrationv1.AddToScheme, v1.AddToScheme, resolutionv1beta1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building scheme: %w", err)
		}
	}
	return s, nil
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.ResolutionTimeout <= 0 || cfg.ResolutionTimeout > registration.MaxResolutionTimeout {
		return fmt.Errorf("resolution timeout %s must be in (0, %s]", cfg.ResolutionTimeout, registration.MaxResolutionTimeout)
	}
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	log := cfg.Log

	var selfTLS *selfcert.Running
	if cfg.SelfManaged != nil {
		sm := *cfg.SelfManaged
		sm.Rest, sm.CertDir, sm.Log = cfg.Rest, cfg.CertDir, log.WithName("selfcert")
		if sm.CertName == "" {
			sm.CertName, sm.KeyName = cfg.CertName, cfg.KeyName
		}
		// Certificates must exist before the server starts watching them.
		if selfTLS, err = sm.Start(ctx); err != nil {
			return fmt.Errorf("self-managed TLS: %w", err)
		}
	}

	mgr, err := manager.New(cfg.Rest, manager.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Metrics:                metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress: cfg.HealthAddr,
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: cfg.Host, Port: cfg.Port, CertDir: cfg.CertDir, CertName: cfg.CertName, KeyName: cfg.KeyName,
		}),
		Cache: cache.Options{DefaultTransform: slim},
		Client: client.Options{Cache: &client.CacheOptions{
			// Read live: watching all ResolutionRequests of a cluster to
			// wait for our own would cost memory for nothing.
			DisableFor: []client.Object{&resolutionv1beta1.ResolutionRequest{}},
		}},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	// Start the informers with the manager, so the first admission finds a
	// synced cache instead of waiting for a list of every Task.
	nsMeta := &metav1.PartialObjectMetadata{}
	nsMeta.SetGroupVersionKind(webhook.NamespaceGVK)
	informed := []client.Object{&v1.Task{}, &v1.Pipeline{}, nsMeta}
	if !cfg.IgnoreVerificationPolicies {
		policyMeta := &metav1.PartialObjectMetadata{}
		policyMeta.SetGroupVersionKind(webhook.VerificationPolicyGVK)
		informed = append(informed, policyMeta)
	}
	for _, obj := range informed {
		if _, err := mgr.GetCache().GetInformer(ctx, obj, cache.BlockUntilSynced(false)); err != nil {
			return fmt.Errorf("starting informer for %T: %w", obj, err)
		}
	}

	res := &resolve.Resolver{
		Cache:   mgr.GetCache(),
		Client:  mgr.GetClient(),
		Live:    mgr.GetAPIReader(),
		Timeout: cfg.ResolutionTimeout,

		PickupTimeout:      cfg.ResolutionPickupTimeout,
		ResolversNamespace: cfg.ResolversNamespace,
		Observe: func(resolver string, took time.Duration, err error) {
			webhook.ObserveResolution(resolver, took.Seconds(), err)
		},
		Log: log.WithName("resolve"),
	}
	h := &webhook.Handler{
		LabelKey:   cfg.LabelKey,
		Strict:     cfg.Strict,
		Mode:       cfg.Mode,
		Options:    cfg.Options,
		Resolver:   res,
		Namespaces: webhook.CachedNamespaces{Reader: mgr.GetCache(), Live: mgr.GetAPIReader()},
		Log:        log.WithName("admission"),
	}
	if !cfg.IgnoreVerificationPolicies {
		h.Policies = webhook.CachedVerificationPolicies{Reader: mgr.GetCache(), Live: mgr.GetAPIReader()}
	}
	mgr.GetWebhookServer().Register(registration.Path, &crwebhook.Admission{Handler: h})

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding healthz: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return fmt.Errorf("adding readyz: %w", err)
	}
	if err := mgr.AddReadyzCheck("cache", cacheSynced(mgr.GetCache())); err != nil {
		return fmt.Errorf("adding readyz: %w", err)
	}
	if selfTLS != nil {
		// Ready while the served certificate's CA is in the caBundle the API
		// server uses; the server stops if the rotation does.
		if err := mgr.AddReadyzCheck("tls", selfTLS.Ready); err != nil {
			return fmt.Errorf("adding readyz: %w", err)
		}
		if err := mgr.Add(selfTLS); err != nil {
			return fmt.Errorf("adding self-managed TLS: %w", err)
		}
	}
	log.Info("serving", "path", registration.Path, "port", cfg.Port, "certDir", cfg.CertDir,
		"labelKey", h.LabelKey, "strict", cfg.Strict, "mode", string(h.Mode), "resolutionTimeout", cfg.ResolutionTimeout.String(),
		"ignoreVerificationPolicies", cfg.IgnoreVerificationPolicies)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

// cacheSynced is ready once the informers have listed everything: before
// that, a taskRef by name could be reported missing.
func cacheSynced(c cache.Cache) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), 100*time.Millisecond)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("informer cache not synced")
		}
		return nil
	}
}

// slim drops what the handler never reads from cached objects: managed
// fields and the last-applied annotation often outweigh the spec itself.
func slim(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
		if a := o.GetAnnotations(); a != nil {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	return obj, nil
}
