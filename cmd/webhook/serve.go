package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/selfcert"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/server"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"
)

// serveFlags are every setting of the server, one flag each.
type serveFlags struct {
	kubeconfig string

	host, certDir, certName, keyName string
	port                             int
	tlsMode                          string
	secretName, namespace            string
	serviceName                      string
	servicePort                      int
	webhookConfiguration             string
	failurePolicy                    string

	// options reads the transform flags shared with convert (options.go).
	options func() transform.Options
	// tokenService and tokenOptions read the registry token service's
	// flags (options.go).
	tokenService func() bool
	tokenOptions func(namespace, prefix, certDir, certName, keyName string, log logr.Logger) registryauth.Options

	labelKey                   string
	resolutionTimeout          time.Duration
	resolutionPickupTimeout    time.Duration
	resolversNamespace         string
	strict                     bool
	mode                       choice
	ignoreVerificationPolicies bool

	metricsAddr, healthAddr string
	logLevel                int

	printConfig bool
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, or $KUBECONFIG)")
	fs.StringVar(&f.host, "listen-host", "", "address the HTTPS webhook server listens on (all interfaces if empty)")
	fs.IntVar(&f.port, "port", 9443, "port of the HTTPS webhook server")
	fs.StringVar(&f.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with the serving certificate and key; reloaded when they change (cert-manager mounts it)")
	fs.StringVar(&f.certName, "cert-name", "tls.crt", "serving certificate file name in --cert-dir")
	fs.StringVar(&f.keyName, "key-name", "tls.key", "serving key file name in --cert-dir")
	fs.StringVar(&f.tlsMode, "tls-mode", "cert-dir", "cert-dir: serve what is in --cert-dir; self-managed: generate a CA and certificate, share them through --tls-secret, and keep the caBundle of --webhook-configuration current")
	fs.StringVar(&f.secretName, "tls-secret", "tekton-oci-transport-tls", "self-managed mode: Secret in --namespace that stores the CA and certificate")
	fs.StringVar(&f.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace the webhook runs in (default $POD_NAMESPACE)")
	fs.StringVar(&f.serviceName, "service-name", "tekton-oci-transport", "Service the API server calls (certificate names, printed configuration)")
	fs.IntVar(&f.servicePort, "service-port", 443, "port of that Service (printed configuration)")
	fs.StringVar(&f.webhookConfiguration, "webhook-configuration", registration.DefaultName, "name of our MutatingWebhookConfiguration (the only one self-managed mode touches)")
	fs.StringVar(&f.failurePolicy, "failure-policy", string(admissionregistrationv1.Ignore), "failurePolicy of the printed configuration: Ignore or Fail")
	f.options = transformFlags(fs)
	f.tokenService, f.tokenOptions = tokenServiceFlags(fs)
	fs.StringVar(&f.labelKey, "label-key", transform.EnabledLabel, `label that opts a run or namespace in ("true"; "audit" audits it, see --mode; "false" on a run opts out)`)
	fs.DurationVar(&f.resolutionTimeout, "resolution-timeout", registration.DefaultResolutionTimeout, "deadline for resolving a run's references; the webhook timeout is this plus "+registration.TimeoutMargin.String())
	fs.DurationVar(&f.resolutionPickupTimeout, "resolution-pickup-timeout", resolve.DefaultPickupTimeout, "a ResolutionRequest that no controller marks within this is abandoned (nobody runs its resolver) instead of holding the admission until --resolution-timeout")
	fs.StringVar(&f.resolversNamespace, "resolvers-namespace", resolve.DefaultResolversNamespace, "namespace of Tekton's resolvers and their ConfigMap resolvers-feature-flags: a reference to a resolver that it turns off is refused at once")
	f.mode = choice{value: string(webhook.ModeConvert), allowed: []string{string(webhook.ModeConvert), string(webhook.ModeAudit)}}
	fs.Var(&f.mode, "mode", "convert: convert opted-in runs; audit: evaluate every opted-in run as convert would and admit it unchanged but for annotations recording the would-be outcome (oci-transport.tekton.dev/audit*), with a warning. A run or namespace labelled \"audit\" is audited in either mode (docs/migration.md)")
	fs.BoolVar(&f.strict, "strict", false, "deny a run that opted in but cannot be converted, instead of admitting it unchanged with a warning")
	fs.BoolVar(&f.ignoreVerificationPolicies, "ignore-verification-policies", false, "convert runs in namespaces with a Tekton VerificationPolicy too, bypassing the verification of the Pipeline and Tasks they inline (by default such runs are left unchanged; set it only on clusters without the VerificationPolicy CRD)")
	fs.StringVar(&f.metricsAddr, "metrics-address", ":8080", "address of the Prometheus /metrics endpoint (0 disables)")
	fs.StringVar(&f.healthAddr, "health-address", ":8081", "address of /healthz and /readyz (0 disables)")
	fs.IntVar(&f.logLevel, "v", 0, "log verbosity (1: every admission)")
	fs.BoolVar(&f.printConfig, "print-webhook-configuration", false, "print the MutatingWebhookConfiguration for these flags as YAML and exit (the chart renders the same values)")
}

func (f *serveFlags) registration() registration.Values {
	return registration.Values{
		Name:              f.webhookConfiguration,
		ServiceName:       f.serviceName,
		ServiceNamespace:  f.namespace,
		ServicePort:       int32(f.servicePort),
		LabelKey:          f.labelKey,
		ResolutionTimeout: f.resolutionTimeout,
		FailurePolicy:     admissionregistrationv1.FailurePolicyType(f.failurePolicy),
	}
}

// transformOptions are the rewrite's options: the flags shared with
// convert, and while the token service runs, a ServiceAccount token for its
// audience in the injected steps (--token-audience, so the chart sets the
// audience once; --registry-token-audience may only repeat it).
func (f *serveFlags) transformOptions() (transform.Options, error) {
	o := f.options()
	if !f.tokenService() {
		return o, nil
	}
	audience := f.tokenOptions(f.namespace, o.RepositoryPrefix, f.certDir, f.certName, f.keyName, logr.Discard()).Audience
	switch o.RegistryTokenAudience {
	case "":
		o.RegistryTokenAudience = audience
	case audience:
	default:
		return o, fmt.Errorf("--registry-token-audience %q differs from --token-audience %q: the token service would refuse the steps' tokens (leave --registry-token-audience unset: it follows --token-audience)",
			o.RegistryTokenAudience, audience)
	}
	return o, nil
}

func (f *serveFlags) validate() error {
	var errs []error
	o, err := f.transformOptions()
	if err != nil {
		errs = append(errs, err)
	}
	if err := o.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--registry, --step-*, --results-budget, --registry-token-audience: %w", err))
	}
	if len(o.StepCommand) > 0 && o.StepCommand[0] == "" {
		errs = append(errs, errors.New("--step-command must not be empty"))
	}
	if f.resolutionTimeout <= 0 || f.resolutionTimeout > registration.MaxResolutionTimeout {
		errs = append(errs, fmt.Errorf("--resolution-timeout must be in (0, %s]", registration.MaxResolutionTimeout))
	}
	if f.resolutionPickupTimeout <= 0 || f.resolutionPickupTimeout > f.resolutionTimeout {
		errs = append(errs, errors.New("--resolution-pickup-timeout must be more than 0 and at most --resolution-timeout"))
	}
	if f.resolversNamespace == "" {
		errs = append(errs, errors.New("--resolvers-namespace must not be empty"))
	}
	switch f.tlsMode {
	case "cert-dir":
	case "self-managed":
		if f.namespace == "" {
			errs = append(errs, errors.New("--tls-mode=self-managed needs --namespace (or $POD_NAMESPACE)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--tls-mode must be cert-dir or self-managed, not %q", f.tlsMode))
	}
	switch admissionregistrationv1.FailurePolicyType(f.failurePolicy) {
	case admissionregistrationv1.Ignore, admissionregistrationv1.Fail:
	default:
		errs = append(errs, fmt.Errorf("--failure-policy must be Ignore or Fail, not %q", f.failurePolicy))
	}
	if f.tokenService() {
		if err := f.tokenOptions(f.namespace, o.RepositoryPrefix, f.certDir, f.certName, f.keyName, logr.Discard()).Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func serve(args []string, stdout, stderr io.Writer) int {
	var f serveFlags
	fs := flag.NewFlagSet("webhook serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected arguments %q (flags only; see -h)\n", fs.Args())
		return 2
	}
	if f.printConfig {
		out, err := yaml.Marshal(registration.MutatingWebhookConfiguration(f.registration()))
		if err != nil {
			fmt.Fprintln(stderr, "serve:", err)
			return 1
		}
		_, _ = stdout.Write(out)
		return 0
	}
	if err := f.validate(); err != nil {
		fmt.Fprintln(stderr, "serve:", err)
		return 2
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.Level(-f.logLevel)}))
	ctrllog.SetLogger(log)
	webhook.SetBuildInfo(version)

	rc, err := restConfig(f.kubeconfig)
	if err != nil {
		log.Error(err, "no Kubernetes configuration")
		return 1
	}
	opts, _ := f.transformOptions() // validated above
	cfg := server.Config{
		Rest: rc, Host: f.host, Port: f.port,
		CertDir: f.certDir, CertName: f.certName, KeyName: f.keyName,
		MetricsAddr: f.metricsAddr, HealthAddr: f.healthAddr,
		LabelKey: f.labelKey, Strict: f.strict, Mode: webhook.Mode(f.mode.value), Options: opts,
		ResolutionTimeout:          f.resolutionTimeout,
		ResolutionPickupTimeout:    f.resolutionPickupTimeout,
		ResolversNamespace:         f.resolversNamespace,
		IgnoreVerificationPolicies: f.ignoreVerificationPolicies,
		Log:                        log,
	}
	if f.tlsMode == "self-managed" {
		cfg.SelfManaged = &selfcert.Config{
			SecretNamespace: f.namespace, SecretName: f.secretName,
			ServiceName: f.serviceName, ServiceNamespace: f.namespace,
			WebhookConfiguration: f.webhookConfiguration,
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The registry token service runs beside the webhook; either stopping
	// on an error stops both.
	var tokenDone chan error
	if f.tokenService() {
		tl := log.WithName("token-service")
		to := f.tokenOptions(f.namespace, cfg.Options.RepositoryPrefix, f.certDir, f.certName, f.keyName, tl)
		svc, err := registryauth.New(rc, to)
		if err != nil {
			log.Error(err, "token service")
			return 1
		}
		tokenDone = make(chan error, 1)
		go func() {
			err := svc.ListenAndServe(ctx, to.Addr)
			if err != nil {
				tl.Error(err, "token service stopped")
			}
			tokenDone <- err
			stop()
		}()
	}
	code := 0
	if err := server.Run(ctx, cfg); err != nil {
		log.Error(err, "webhook server stopped")
		code = 1
	}
	stop()
	if tokenDone != nil && <-tokenDone != nil {
		code = 1
	}
	return code
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := ctrlconfig.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return c, nil
}
