# tekton-oci-transport: every entry point a developer or CI uses.
# Real components (registry, oras, kube-apiserver, etcd, helm) are built from
# the Go module proxy by hack/tools.sh and cached outside the clone by version.

SHELL := /usr/bin/env bash
GO ?= go
BIN ?= bin
TOOLS := hack/tools.sh
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build test unit lint fmt tools demo bench bench-transport bench-webhook fuzz clean

all: build

## build: the webhook (with its offline `convert`) and the step binary
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## tools: build the real components the tests run against (cached)
tools:
	$(TOOLS) registry oras

# Test binaries find the real components through these variables; under CI a
# test that needs one and does not find it fails instead of skipping.
TEST_ENV = REGISTRY_BIN=$$($(TOOLS) registry)/registry ORAS_BIN=$$($(TOOLS) oras)/oras KUBEBUILDER_ASSETS=$$($(TOOLS) envtest)
# The chart tests (test/chart) run the real helm, built once like the other tools.
TEST_ENV += HELM_BIN=$$($(TOOLS) helm)/helm
# zot (the registry the chart installs) is not on the module proxy: hack/zot.sh
# finds the binary beside the clone (../shared/zot) or in the tools cache.
TEST_ENV += ZOT_BIN=$$(hack/zot.sh)
# versitygw: the S3 server test/s3 stores two zot replicas' data in.
TEST_ENV += VERSITYGW_BIN=$$($(TOOLS) versitygw)/versitygw

## test: everything CI runs (the README's command); EQUIVALENCE=0 skips the real-cluster equivalence run
EQUIVALENCE ?= 1
test: lint
	$(TEST_ENV) $(GO) test -race -count=1 ./...
	@if [ "$(EQUIVALENCE)" = 1 ]; then $(MAKE) --no-print-directory equivalence; else echo "make test: equivalence skipped (EQUIVALENCE=0)"; fi

## manifests: re-render deploy/manifests from the chart with its defaults (make test fails on drift)
.PHONY: manifests
manifests:
	HELM_BIN=$$($(TOOLS) helm)/helm $(GO) test -count=1 -run '^TestDeployManifests$$' ./test/chart -update

## unit: quick tests with no real components
unit:
	$(GO) test -count=1 -short ./...

## demo: bring up the test bed, run the example labelled release run converted by our webhook, tear down (KEEP=1 keeps it up)
demo: build
	hack/demo.sh

## cluster-up: a real single-node Kubernetes + Tekton + registry + our chart on this machine (test/cluster; builds what is missing, cached)
.PHONY: cluster-up cluster-down equivalence
cluster-up:
	test/cluster/up.sh

## cluster-down: stop the test bed and leave the machine as it was (checked)
cluster-down:
	test/cluster/down.sh

## equivalence: every corpus run on a PVC and converted, compared task by task (brings the test bed up and down unless KEEP=1 / it is already up)
equivalence:
	test/equivalence/run.sh

## bench: benchmarks (numbers go into issue notes; nothing here asserts time)
bench: bench-transport
	$(GO) test -run '^$$' -bench . -benchmem ./transform/...

## bench-webhook: admission of the inline 13-task run over HTTPS at 100 req/s for 30 s, 1 000 Tasks cached (real kube-apiserver); BENCH_TOKENS=1 also issues registry tokens at the same rate from the same process
bench-webhook:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/webhook ./cmd/webhook
	KUBEBUILDER_ASSETS=$$($(TOOLS) envtest) WEBHOOK_BIN=$(abspath $(BIN))/webhook BENCH_WEBHOOK=1 \
	  $(GO) test -count=1 -run '^TestLoad$$' -v ./test/e2e/

## bench-transport: ours vs the oras CLI on 1 GiB and 20 000 small files (real registry); `hack/bench-transport.sh link` (root): the same vs the floor on loopback and on links shaped to 1 Gbit/s 1 ms and 100 Mbit/s 5 ms, Distribution and zot
bench-transport:
	hack/bench-transport.sh

## fuzz: run each fuzz target for FUZZTIME (not part of CI). Minimizing a new
## input may take 60 s by default, with no execs counted meanwhile; 5 s is plenty.
## -timeout 0: go test's default 10 m timeout would end a longer run as a failure.
FUZZTIME ?= 5m
FUZZFLAGS = -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s -timeout 0
fuzz:
	$(GO) test $(FUZZFLAGS) -fuzz FuzzPipelineRun ./transform/
	$(GO) test $(FUZZFLAGS) -fuzz FuzzExtract ./transport/
	$(GO) test $(FUZZFLAGS) -fuzz FuzzDeltaConfigRoundTrip ./transport/

clean:
	rm -rf $(BIN)

## images: the webhook and step images as OCI archives (tars of an OCI image layout) in IMAGES_DIR, assembled without a Docker daemon (hack/images.sh)
IMAGES_DIR ?= $(BIN)/images
.PHONY: images push-images
images:
	VERSION='$(VERSION)' IMAGES_DIR='$(IMAGES_DIR)' hack/images.sh build

## push-images: push both to IMAGE_REPO=<registry/path> (tag IMAGE_TAG, default VERSION; PLAIN_HTTP=1 for a registry without TLS) and print the helm install line with their digests
push-images: images
	VERSION='$(VERSION)' IMAGES_DIR='$(IMAGES_DIR)' IMAGE_REPO='$(IMAGE_REPO)' IMAGE_TAG='$(IMAGE_TAG)' PLAIN_HTTP='$(PLAIN_HTTP)' hack/images.sh push
