package main

import (
	"flag"
	"strings"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
)

// Defaults shared by `serve` and `convert`, so a file converted offline looks
// exactly like what the installed webhook would admit. The chart sets each of
// them explicitly, one value per flag.
const (
	defaultRegistry         = "tekton-oci-transport-zot.tekton-oci-transport.svc:5000"
	defaultRepositoryPrefix = "tekton-oci-transport"
	defaultStepCommand      = "/usr/local/bin/oci-transport-step"
)

// defaultStepImage is the chart's default step image, tagged with this
// binary's version (the chart's appVersion for a release build).
func defaultStepImage() string { return "ghcr.io/tekton-oci-transport/oci-transport-step:" + version }

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
	return func() transform.Options {
		return transform.Options{
			Registry:         *registry,
			RepositoryPrefix: *prefix,
			PlainHTTP:        *plainHTTP,
			StepImage:        *image,
			StepCommand:      []string{*command},
			StepArgs:         append([]string(nil), stepArgs...),
		}
	}
}
