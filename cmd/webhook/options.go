package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Defaults shared by `serve` and `convert`, so a file converted offline looks
// exactly like what the installed webhook would admit. The chart sets each of
// them explicitly, one value per flag.
const (
	defaultRegistry         = "tekton-oci-transport-zot.tekton-oci-transport.svc:5000"
	defaultRepositoryPrefix = "tekton-oci-transport"
	defaultStepCommand      = "/usr/local/bin/oci-transport-step"
)

// chartAppVersion is the appVersion of the chart in this tree
// (charts/tekton-oci-transport/Chart.yaml), the tag its step image defaults
// to; test/install checks that the two stay equal.
const chartAppVersion = "v0.1.0"

// defaultStepImage is the step image the chart of the same version installs
// by default (steps.image: its repository, tagged with the chart's
// appVersion), so that `convert` shows what the installed webhook injects.
// Not tagged with this binary's version: a build between releases (git
// describe: v0.1.0-3-gabc1234-dirty) names an image no one pushed. A chart
// installed from `make push-images` injects <IMAGE_REPO>/oci-transport-step@sha256:...,
// which --step-image takes as well.
func defaultStepImage() string {
	return "ghcr.io/tekton-oci-transport/oci-transport-step:" + chartAppVersion
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// transformFlags registers the flags that fill transform.Options and returns
// a function that reads them once the flag set is parsed.
func transformFlags(fs *flag.FlagSet) func() transform.Options {
	registry := fs.String("registry", defaultRegistry, "host[:port] of the OCI registry the injected steps push to and pull from")
	prefix := fs.String("repository-prefix", defaultRepositoryPrefix, "repository path under the registry for every run's artifacts: <prefix>/<namespace>/<pipelinerun-uid>/<workspace>")
	plainHTTP := fs.Bool("plain-http", true, "the injected steps talk plain HTTP to the registry (the bundled in-cluster zot); false for HTTPS")
	image := fs.String("step-image", defaultStepImage(), "image of the injected pull and push steps")
	command := fs.String("step-command", defaultStepCommand, "path of the step binary inside the step image")
	var stepArgs stringList
	fs.Var(&stepArgs, "step-arg", "extra flag passed to every injected pull and push step (repeatable), e.g. --step-arg=--concurrency=4")
	var cpuRequest, memoryRequest, cpuLimit, memoryLimit quantity
	const unset = "; empty sets none (the Task's stepTemplate, else the namespace's LimitRange, decides)"
	fs.Var(&cpuRequest, "step-cpu-request", "CPU request of every injected pull and push step, a Kubernetes `quantity` such as 100m"+unset)
	fs.Var(&memoryRequest, "step-memory-request", "memory request of every injected pull and push step, a `quantity` such as 64Mi"+unset)
	fs.Var(&cpuLimit, "step-cpu-limit", "CPU limit of every injected pull and push step, a `quantity`"+unset)
	fs.Var(&memoryLimit, "step-memory-limit", "memory limit of every injected pull and push step, a `quantity` such as 128Mi (the step sets GOMEMLIMIT to 3/4 of it)"+unset)
	budget := choice{value: transform.ResultsBudgetWarn, allowed: []string{transform.ResultsBudgetWarn, transform.ResultsBudgetUnchanged}}
	fs.Var(&budget, "results-budget", "a run in which a task that returns results gets a smaller termination-message share from the injected steps: `warn` converts it with an admission warning, unchanged leaves it unchanged (reason ResultsBudgetReduced)")
	audience := fs.String("registry-token-audience", "", "audience of a projected ServiceAccount token mounted into the injected steps only (--registry-token-file), which they trade at the registry's token service for access to their namespace's repositories; empty mounts none. serve sets it from --token-audience when it runs the token service; give it to convert to see what such a webhook does (the chart's default: "+registryauth.DefaultAudience+")")
	return func() transform.Options {
		var res corev1.ResourceRequirements
		cpuRequest.into(&res.Requests, corev1.ResourceCPU)
		memoryRequest.into(&res.Requests, corev1.ResourceMemory)
		cpuLimit.into(&res.Limits, corev1.ResourceCPU)
		memoryLimit.into(&res.Limits, corev1.ResourceMemory)
		return transform.Options{
			Registry:         *registry,
			RepositoryPrefix: *prefix,
			PlainHTTP:        *plainHTTP,
			StepImage:        *image,
			StepCommand:      []string{*command},
			StepArgs:         append([]string(nil), stepArgs...),
			StepResources:    res,
			ResultsBudget:    budget.value,

			RegistryTokenAudience: *audience,
		}
	}
}

// choice is a flag that takes one of a fixed set of values: anything else is
// a usage error when the flags are parsed, before a server starts.
type choice struct {
	value   string
	allowed []string
}

func (c *choice) String() string {
	if c == nil {
		return ""
	}
	return c.value
}

func (c *choice) Set(v string) error {
	if !slices.Contains(c.allowed, v) {
		return fmt.Errorf("must be one of %s", strings.Join(c.allowed, ", "))
	}
	c.value = v
	return nil
}

// quantity is a resource quantity flag, parsed when the flags are (a
// malformed one is a usage error at startup); empty leaves it unset.
type quantity struct{ q *resource.Quantity }

func (f *quantity) String() string {
	if f == nil || f.q == nil {
		return ""
	}
	return f.q.String()
}

func (f *quantity) Set(v string) error {
	if v == "" {
		f.q = nil
		return nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return fmt.Errorf("not a Kubernetes quantity (e.g. 100m, 64Mi): %w", err)
	}
	f.q = &q
	return nil
}

// into sets name in *list when the flag is set.
func (f *quantity) into(list *corev1.ResourceList, name corev1.ResourceName) {
	if f.q == nil {
		return
	}
	if *list == nil {
		*list = corev1.ResourceList{}
	}
	(*list)[name] = f.q.DeepCopy()
}

// tokenServiceFlags registers the flags of the registry token service
// (registryauth) and returns whether it is enabled and a function that
// builds its options once the flag set is parsed, from the namespace, the
// repository prefix and the serving certificate the webhook has anyway.
func tokenServiceFlags(fs *flag.FlagSet) (enabled func() bool, options func(namespace, prefix, certDir, certName, keyName string, log logr.Logger) registryauth.Options) {
	addr := fs.String("token-service-address", "0", "address of the registry token service, e.g. :9444 (0 disables): the injected steps trade their ServiceAccount token there for a registry token limited to their namespace's repositories")
	tlsOn := fs.Bool("token-service-tls", false, "serve the token service over HTTPS with the webhook's certificate (--cert-dir); default plain HTTP, like the in-cluster registry")
	audience := fs.String("token-audience", registryauth.DefaultAudience, "audience of the steps' projected ServiceAccount tokens; the token service accepts no other")
	issuer := fs.String("token-issuer", registryauth.DefaultIssuer, "iss of the registry tokens (Distribution's auth.token.issuer)")
	service := fs.String("token-registry-service", registryauth.DefaultService, "aud of the registry tokens: the service the registries name in their challenge (zot http.auth.bearer.service, Distribution auth.token.service)")
	ttl := fs.Duration("token-ttl", registryauth.DefaultTTL, "lifetime of a registry token")
	secret := fs.String("token-signing-secret", registryauth.DefaultSecretName, "Secret in --namespace holding the signing key and the bundle the registries trust (bundle.pem); created when missing")
	enabled = func() bool { return *addr != "0" && *addr != "" }
	options = func(namespace, prefix, certDir, certName, keyName string, log logr.Logger) registryauth.Options {
		o := registryauth.Options{
			Addr: *addr, Namespace: namespace, SecretName: *secret,
			Issuer: *issuer, Service: *service, Audience: *audience,
			RepositoryPrefix: prefix, TTL: *ttl, Log: log,
		}
		if *tlsOn {
			o.CertFile, o.KeyFile = filepath.Join(certDir, certName), filepath.Join(certDir, keyName)
		}
		return o
	}
	return enabled, options
}
