package transform

import (
	"errors"
	"fmt"
	"strings"
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
	return append(args, o.StepArgs...)
}
