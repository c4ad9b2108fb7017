// Package transport moves Tekton workspace deltas through an OCI registry:
// Pull applies the deltas of a task's ancestors to its workspace mounts and
// records a baseline; Push computes what the task changed since that
// baseline and pushes it as one tagged OCI artifact. It has no Kubernetes
// dependency. See README.md for the CLI contract, the artifact format, the
// safety rules and the benchmark.
package transport
