# syntax=docker/dockerfile:1
#
# Two images from one build:
#
#   docker build --target webhook --build-arg VERSION=v0.1.0 -t ghcr.io/tekton-oci-transport/webhook:v0.1.0 .
#   docker build --target step    --build-arg VERSION=v0.1.0 -t ghcr.io/tekton-oci-transport/oci-transport-step:v0.1.0 .
#
# The binaries are static (CGO off), built with -trimpath and without VCS
# stamping, so the same source, VERSION and Go version give the same bytes;
# pass SOURCE_DATE_EPOCH (e.g. the commit time) for reproducible image
# timestamps too. The chart's image values default to these names, tagged
# with the chart's appVersion.

ARG GO_VERSION=1.26
# Minimal bases: CA certificates, /etc/passwd and tzdata, no shell. Pin them
# by digest for a reproducible image (--build-arg STEP_BASE=...@sha256:...).
ARG STEP_BASE=gcr.io/distroless/static-debian12:latest
ARG WEBHOOK_BASE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/webhook ./cmd/oci-transport-step

# The injected pull and push steps. Root by default: a pull restores file
# owners only as root, as a PVC would have kept them; a Task whose steps run
# as non-root runs these steps as that user too (the webhook copies its
# securityContext), and the steps then work without root.
FROM ${STEP_BASE} AS step
COPY --from=build /out/oci-transport-step /usr/local/bin/oci-transport-step
ENTRYPOINT ["/usr/local/bin/oci-transport-step"]

# The admission webhook: never needs root (the chart also enforces it).
FROM ${WEBHOOK_BASE} AS webhook
COPY --from=build /out/webhook /usr/local/bin/webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook"]
CMD ["serve"]
