#!/usr/bin/env bash
# hack/images.sh: the two images of this project without a Docker daemon
# (make images, make push-images).
#
#   hack/images.sh build   the webhook and step images as OCI archives (tars of
#                          an OCI image layout) in $IMAGES_DIR:
#                          webhook.tar, oci-transport-step.tar
#   hack/images.sh push    pushes both to $IMAGE_REPO/webhook and
#                          $IMAGE_REPO/oci-transport-step (tag $IMAGE_TAG,
#                          default $VERSION) and prints the helm line that
#                          installs the chart from them by digest
#
# Each image is one layer: the static binary (CGO off, -trimpath, no VCS
# stamp, -X main.version=$VERSION, as `make build` and the Dockerfile build
# it) in /usr/local/bin, this machine's CA bundle in
# /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group (root,
# nonroot 65532, nobody) and /tmp (1777); nothing else, no shell, no base
# image. The webhook runs as 65532. The step image runs as root unless the
# Task says otherwise, as in the Dockerfile: a pull restores file owners only
# as root, as a PVC would have kept them (the webhook gives the injected
# steps the Task's securityContext). Files are owned by root with times at 0,
# so the same tree, $VERSION, Go version and CA bundle give the same digests.
#
#   VERSION     version stamped into the binaries (make: git describe)
#   REVISION    the commit the org.opencontainers.image.revision annotation
#               names (default: git rev-parse HEAD)
#   IMAGES_DIR  where the archives go (make: bin/images)
#   GOARCH      target architecture (default: go env GOARCH); linux only
#   IMAGE_REPO  registry/path to push under (push; required)
#   IMAGE_TAG   tag to push (default $VERSION)
#   PLAIN_HTTP  1: the registry speaks plain HTTP (a test or in-cluster one)
#   SET_FILE    push: also write the helm --set flags there, one per line
# Credentials for push: the Docker config (~/.docker/config.json or
# $DOCKER_CONFIG, credential helpers included) when it has some.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
IMAGES_DIR=${IMAGES_DIR:-bin/images}
GOARCH=${GOARCH:-$(go env GOARCH)}
# the names written into the archives (a `ctr images import` uses them):
# the chart's default repositories
NAME_PREFIX=ghcr.io/tekton-oci-transport
SOURCE=https://github.com/tekton-oci-transport/tekton-oci-transport
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

digest_of() { # digest_of ARCHIVE: the manifest digest its index.json names
  tar -xOf "$1" index.json | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' | head -1
}

build() {
  [ -f "$CA_BUNDLE" ] || { echo "images: no CA bundle at $CA_BUNDLE (apt-get install ca-certificates, or set CA_BUNDLE)" >&2; exit 1; }
  local w rev
  w=$(mktemp -d)
  trap 'rm -rf "$w"' RETURN
  mkdir -p "$IMAGES_DIR"
  go build -o "$w/imgtool" ./test/cluster/imgtool
  rev=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
  for name in webhook oci-transport-step; do
    local root=$w/$name user=()
    mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
    chmod 1777 "$root/tmp"
    cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    chmod 644 "$root/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
    chmod 644 "$root/etc/passwd" "$root/etc/group"
    CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=$VERSION" -o "$root/usr/local/bin/$name" "./cmd/$name"
    [ "$name" = webhook ] && user=(-user 65532)
    "$w/imgtool" -format oci -arch "$GOARCH" -o "$IMAGES_DIR/$name.tar" -root "$root" \
      -tag "$NAME_PREFIX/$name:$VERSION" "${user[@]}" \
      -annotation "org.opencontainers.image.title=$name" \
      -annotation "org.opencontainers.image.version=$VERSION" \
      -annotation "org.opencontainers.image.revision=$rev" \
      -annotation "org.opencontainers.image.source=$SOURCE" \
      -- "/usr/local/bin/$name"
    printf '%-22s %s  %s (linux/%s, %s)\n' "$name" "$(digest_of "$IMAGES_DIR/$name.tar")" "$IMAGES_DIR/$name.tar" "$GOARCH" "$(du -h "$IMAGES_DIR/$name.tar" | cut -f1)"
  done
}

push() {
  [ -n "${IMAGE_REPO:-}" ] || { echo "images: set IMAGE_REPO=<registry/path> (e.g. make push-images IMAGE_REPO=ghcr.io/me/tekton-oci-transport)" >&2; exit 2; }
  local a flags=() w
  for a in webhook oci-transport-step; do
    [ -f "$IMAGES_DIR/$a.tar" ] || { echo "images: $IMAGES_DIR/$a.tar missing: make images first" >&2; exit 1; }
  done
  w=$(mktemp -d)
  trap 'rm -rf "$w"' RETURN
  go build -o "$w/pushimages" ./hack/pushimages
  [ "${PLAIN_HTTP:-0}" = 1 ] && flags+=(-plain-http)
  [ -n "${SET_FILE:-}" ] && flags+=(-set-file "$SET_FILE")
  "$w/pushimages" -repo "$IMAGE_REPO" -tag "${IMAGE_TAG:-$VERSION}" "${flags[@]}" \
    webhook="$IMAGES_DIR/webhook.tar" oci-transport-step="$IMAGES_DIR/oci-transport-step.tar"
}

case "${1:-}" in
  build) build ;;
  push) push ;;
  *) echo "usage: hack/images.sh build|push (see the comment at the top)" >&2; exit 2 ;;
esac
