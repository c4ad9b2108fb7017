# Two images from one build:
#
#   docker build --target webhook --build-arg VERSION=v0.1.0 -t ghcr.io/tekton-oci-transport/webhook:v0.1.0 .
#   docker build --target step    --build-arg VERSION=v0.1.0 -t ghcr.io/tekton-oci-transport/oci-transport-step:v0.1.0 .
#
# `make images` assembles the same two images without a Docker daemon, as
# OCI archives, and `make push-images` pushes them (hack/images.sh; README,
# "Install"): that is the path the project tests, on its test bed. Both give
# each image the static binary in /usr/local/bin, a CA bundle, /etc/passwd
# and /etc/group (root, nonroot 65532, nobody) and /tmp (1777), nothing
# else: no shell, and no base image (FROM scratch).
#
# The binaries are static (CGO off), built with -trimpath and without VCS
# stamping, so the same source, VERSION and Go version give the same bytes.
# The chart's image values default to these names, tagged with the chart's
# appVersion.
#
# Base images: the only one is the build stage's Go image, pinned to the Go
# version go.mod names but NOT by digest. Its digest could not be learned
# where this file was written (no registry access), and a digest copied from
# elsewhere could not have been checked, so none is written here. To pin it,
# take the digest from the registry and pass it:
#
#   docker buildx imagetools inspect golang:1.26.8     (or: crane digest golang:1.26.8)
#   docker build --build-arg GO_IMAGE=golang:1.26.8@sha256:<digest> ...
#
# No `# syntax=` line either (it would pull an unpinned frontend image):
# RUN --mount needs BuildKit's built-in Dockerfile frontend, Docker 23 or later.

ARG GO_IMAGE=golang:1.26.8

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
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
# The rest of both images' file system (the Go image is Debian: its CA bundle).
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/usr/local/bin && \
    chmod 1777 /rootfs/tmp && \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt && \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd && \
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > /rootfs/etc/group && \
    chmod 644 /rootfs/etc/passwd /rootfs/etc/group /rootfs/etc/ssl/certs/ca-certificates.crt

# The injected pull and push steps. Root by default: a pull restores file
# owners only as root, as a PVC would have kept them; a Task whose steps run
# as non-root runs these steps as that user too (the webhook copies its
# securityContext), and the steps then work without root.
FROM scratch AS step
COPY --from=build /rootfs/ /
COPY --from=build /out/oci-transport-step /usr/local/bin/oci-transport-step
ENTRYPOINT ["/usr/local/bin/oci-transport-step"]

# The admission webhook: never needs root (the chart also enforces it).
FROM scratch AS webhook
COPY --from=build /rootfs/ /
COPY --from=build /out/webhook /usr/local/bin/webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/webhook"]
CMD ["serve"]
