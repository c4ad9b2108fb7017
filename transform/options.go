package transform

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

const (
	// paramRepository carries the run's repository path (without the
	// workspace) into each converted task. It has to be a param: the run's
	// namespace and UID exist only at run time, and only the Pipeline level
	// can see $(context.pipelineRun.*).
	paramRepository = ReservedPrefix + "repository"
	// paramSubPathPrefix + task workspace name carries a binding's subPath
	// into the task when it uses $(params...) that only the Pipeline resolves.
	paramSubPathPrefix = ReservedPrefix + "subpath-"
	// paramProducerStatus carries into a finally task the run-time status of
	// the tasks it pulls from; only the Pipeline level can read
	// $(tasks.<name>.status).
	paramProducerStatus = ReservedPrefix + "producer-status"
	// stateVolume holds the baseline the pull step records for the push step.
	stateVolume = ReservedPrefix + "state"
	statePath   = "/oci-transport/state"

	// tokenVolume is the projected ServiceAccount token the injected steps,
	// and only they, present to the registry's token service
	// (Options.RegistryTokenAudience).
	tokenVolume = ReservedPrefix + "registry-token"
	tokenPath   = "/oci-transport/registry-token"
	tokenFile   = "token"

	pullStepPrefix = ReservedPrefix + "pull-"
	pushStepPrefix = ReservedPrefix + "push-"
)

// Validate reports every problem with the options at once. The webhook runs
// it at startup: an option it would reject on every admission must stop the
// server instead of letting it report ready and fail open.
func (o Options) Validate() error {
	var errs []error
	if o.Registry == "" {
		errs = append(errs, errors.New("registry is required"))
	}
	if strings.Contains(o.Registry, "/") || strings.Contains(o.Registry, "://") {
		errs = append(errs, fmt.Errorf("registry %q must be host[:port], without a scheme or path", o.Registry))
	}
	if o.StepImage == "" {
		errs = append(errs, errors.New("step image is required"))
	}
	if len(o.StepCommand) == 0 {
		errs = append(errs, errors.New("step command is required"))
	}
	errs = append(errs, validateStepResources(o.StepResources)...)
	if o.RegistryTokenAudience != "" && o.RegistryTokenExpirySeconds != 0 && o.RegistryTokenExpirySeconds < 600 {
		errs = append(errs, fmt.Errorf("registry token expiry %ds is below the 600s Kubernetes accepts for a projected ServiceAccount token", o.RegistryTokenExpirySeconds))
	}
	switch o.ResultsBudget {
	case "", ResultsBudgetWarn, ResultsBudgetUnchanged:
	default:
		errs = append(errs, fmt.Errorf("results budget policy %q must be %q or %q", o.ResultsBudget, ResultsBudgetWarn, ResultsBudgetUnchanged))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transform: invalid options: %w", err)
	}
	return nil
}

func (o Options) prefix() string {
	return strings.Trim(o.RepositoryPrefix, "/")
}

// repositoryParamValue is the value of paramRepository: Tekton substitutes
// the context variables when it creates each TaskRun.
func (o Options) repositoryParamValue() string {
	parts := []string{"$(context.pipelineRun.namespace)", "$(context.pipelineRun.uid)"}
	if p := o.prefix(); p != "" {
		parts = append([]string{p}, parts...)
	}
	return strings.Join(parts, "/")
}

// repositoryPattern is what AnnotationRepository shows a user.
func (o Options) repositoryPattern() string {
	parts := []string{o.Registry}
	if p := o.prefix(); p != "" {
		parts = append(parts, p)
	}
	return strings.Join(append(parts, "<namespace>", "<pipelinerun-uid>", "<workspace>"), "/")
}

// commonArgs are the flags every pull and push gets.
func (o Options) commonArgs(verb string) []string {
	args := []string{verb, "--registry", o.Registry}
	if o.PlainHTTP {
		args = append(args, "--plain-http")
	}
	if o.RegistryTokenAudience != "" {
		args = append(args, "--registry-token-file", tokenPath+"/"+tokenFile)
	}
	return append(args, o.StepArgs...)
}

// DefaultRegistryTokenExpirySeconds is the lifetime of the steps' projected
// ServiceAccount token: the shortest Kubernetes accepts (the kubelet renews
// it at 80%, and the step re-reads the file for every registry token).
const DefaultRegistryTokenExpirySeconds = 600

// tokenVolumeFor is the pod volume of the steps' registry identity: a
// ServiceAccount token of the TaskRun's ServiceAccount for the token
// service's audience, bound to the pod, short-lived.
func (o Options) tokenVolumeFor() corev1.Volume {
	exp := o.RegistryTokenExpirySeconds
	if exp == 0 {
		exp = DefaultRegistryTokenExpirySeconds
	}
	return corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: o.RegistryTokenAudience, ExpirationSeconds: &exp, Path: tokenFile,
		}}},
	}}}
}
