#!/usr/bin/env bash
# Builds the real components the tests run against (RECIPES.md in the design
# brief) from the Go module proxy, once, into a cache outside the clone keyed by
# version, and prints the directory that holds the binary.
#
#   hack/tools.sh registry|oras|helm|kube-apiserver|kubectl|etcd   -> prints its bin dir
#   hack/tools.sh kubelet|kube-scheduler|kube-controller-manager|kube-proxy
#   hack/tools.sh tekton        -> bin dir with Tekton Pipelines' controller, webhook and step binaries
#   hack/tools.sh tekton-resolvers -> bin dir with Tekton's remote resolvers (cmd/resolvers:
#                                  git, hub, bundles, cluster, http), same version as tekton
#   hack/tools.sh coredns       -> bin dir with coredns (cluster DNS for the test bed)
#   hack/tools.sh versitygw     -> bin dir with versitygw (an S3 gateway over a POSIX folder,
#                                  the S3 server zot's s3 storage is tested against)
#   hack/tools.sh envtest                                        -> bin dir with kube-apiserver + etcd
#
# Nothing is downloaded from release pages: every binary comes from `go build`.
set -euo pipefail

REGISTRY_VERSION=v3.1.2
ORAS_VERSION=v1.3.6
HELM_VERSION=v3.22.0
KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
TEKTON_VERSION=v1.15.1
COREDNS_VERSION=v1.14.7
VERSITYGW_VERSION=v1.8.0

CACHE=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tekton-oci-transport/tools}

log() { printf 'tools: %s\n' "$*" >&2; }

# cached NAME VERSION BUILD_FUNCTION: runs the build function only when the
# binary is missing, writing into a temp dir renamed into place at the end so
# an interrupted build never leaves a half-written tool behind.
cached() {
  local name=$1 version=$2 build=$3
  local dir=$CACHE/$name-$version
  if [ ! -x "$dir/$name" ]; then
    local tmp
    mkdir -p "$CACHE"
    tmp=$(mktemp -d "$CACHE/.$name-XXXXXX")
    log "building $name $version (once; cached in $dir)"
    local start=$SECONDS
    "$build" "$tmp" "$version"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "built $name $version in $((SECONDS - start))s"
  fi
  printf '%s\n' "$dir"
}

build_registry() { GOBIN=$1 go install "github.com/distribution/distribution/v3/cmd/registry@$2"; }
build_oras() { GOBIN=$1 go install "oras.land/oras/cmd/oras@$2"; }
build_helm() { GOBIN=$1 go install "helm.sh/helm/v3/cmd/helm@$2"; }
# versitygw's go.mod has no replace directives (go 1.25.0): `go install` works.
# Static (CGO off): its posix backend keeps metadata in xattrs through
# github.com/pkg/xattr, plain syscalls.
build_versitygw() { CGO_ENABLED=0 GOBIN=$1 go install -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@$2"; }

# wrapper_module DIR MODULE VERSION PACKAGE...: a module in DIR that requires
# MODULE@VERSION and imports the PACKAGEs (tools.go), tidied once (its
# go.sum marks it done). Building MODULE's commands from it keeps MODULE's
# own go.mod replaces out of the way.
wrapper_module() {
  local mod=$1 module=$2 version=$3 p
  shift 3
  [ -f "$mod/go.sum" ] && return 0
  mkdir -p "$mod"
  (
    cd "$mod"
    printf 'module wrapper\n\ngo 1.26\n\nrequire %s %s\n' "$module" "$version" > go.mod
    { printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
      printf ')\n'; } > tools.go
    go mod tidy >&2
  )
}

# k8s.io/kubernetes replaces its staging modules with local paths, so it cannot
# be `go install`ed: a wrapper module pins each staging module to its release.
kube_wrapper() {
  local version=$1 mod=$CACHE/.src/kubernetes-$version
  if [ ! -f "$mod/go.sum" ]; then
    mkdir -p "$mod"
    (
      cd "$mod"
      printf 'module kubewrapper\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n' "$version" > go.mod
      printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' > tools.go
      go mod download "k8s.io/kubernetes@$version"
      local kgomod staging=${version/v1./v0.}
      kgomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/' "$kgomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}' >> go.mod
      go mod tidy >&2
    )
  fi
  printf '%s\n' "$mod"
}

kube_ldflags() {
  local v=$1 minor
  minor=$(echo "$v" | cut -d. -f2)
  local f="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  printf '%s' "$f"
}

build_kube() {
  local out=$1 version=$2 cmd=$3 mod
  mod=$(kube_wrapper "$version")
  (cd "$mod" && go build -ldflags "$(kube_ldflags "$version")" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd")
}
build_kube-apiserver() { build_kube "$1" "$2" kube-apiserver; }
build_kubectl() { build_kube "$1" "$2" kubectl; }
# The node binaries import packages kube-apiserver and kubectl do not: -mod=mod
# lets the wrapper's go.sum gain their entries on first build.
build_node() {
  local out=$1 version=$2 cmd=$3 mod
  mod=$(kube_wrapper "$version")
  (cd "$mod" && go build -mod=mod -ldflags "$(kube_ldflags "$version")" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd")
}
build_kubelet() { build_node "$1" "$2" kubelet; }
build_kube-scheduler() { build_node "$1" "$2" kube-scheduler; }
build_kube-controller-manager() { build_node "$1" "$2" kube-controller-manager; }
build_kube-proxy() { build_node "$1" "$2" kube-proxy; }

# Tekton Pipelines: the controller, its webhook and the binaries of its step
# images, from the github.com/tektoncd/pipeline module (a wrapper module, like
# kubernetes, so its go.mod replaces never get in the way). The `tekton` marker
# file is written last; its config/ folder is found with `go list -m`.
TEKTON_CMDS="controller webhook entrypoint nop workingdirinit sidecarlogresults"
build_tekton() {
  local out=$1 version=$2 mod=$CACHE/.src/tekton-$2 c
  # shellcheck disable=SC2046 # one package per command
  wrapper_module "$mod" github.com/tektoncd/pipeline "$version" $(for c in $TEKTON_CMDS; do echo "github.com/tektoncd/pipeline/cmd/$c"; done)
  for c in $TEKTON_CMDS; do
    (cd "$mod" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/$c" "github.com/tektoncd/pipeline/cmd/$c")
  done
  (cd "$mod" && go list -m -f '{{.Dir}}' github.com/tektoncd/pipeline) > "$out/config-dir"
  touch "$out/tekton" && chmod +x "$out/tekton"
}

# Tekton's remote resolvers (cmd/resolvers, one binary serving the git, hub,
# bundles, cluster and http resolvers), at the same TEKTON_VERSION, from a
# wrapper module of its own: the resolvers import packages the `tekton`
# wrapper's go.sum has no entries for (go-git, the hub client), and a separate
# wrapper and cache dir leave the `tekton` tool's cache as it is.
build_tekton-resolvers() {
  local out=$1 version=$2 mod=$CACHE/.src/tekton-resolvers-$2
  wrapper_module "$mod" github.com/tektoncd/pipeline "$version" github.com/tektoncd/pipeline/cmd/resolvers
  (cd "$mod" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/tekton-resolvers" github.com/tektoncd/pipeline/cmd/resolvers)
  (cd "$mod" && go list -m -f '{{.Dir}}' github.com/tektoncd/pipeline) > "$out/config-dir"
}

build_coredns() {
  local out=$1 version=$2 mod=$CACHE/.src/coredns-$2
  wrapper_module "$mod" github.com/coredns/coredns "$version" github.com/coredns/coredns
  (cd "$mod" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/coredns" github.com/coredns/coredns)
}

build_etcd() {
  local out=$1 version=$2 mod=$CACHE/.src/etcd-$2
  wrapper_module "$mod" go.etcd.io/etcd/server/v3 "$version" go.etcd.io/etcd/server/v3
  (cd "$mod" && go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

tool() {
  case $1 in
    registry) cached registry "$REGISTRY_VERSION" build_registry ;;
    oras) cached oras "$ORAS_VERSION" build_oras ;;
    helm) cached helm "$HELM_VERSION" build_helm ;;
    kube-apiserver) cached kube-apiserver "$KUBERNETES_VERSION" build_kube-apiserver ;;
    kubectl) cached kubectl "$KUBERNETES_VERSION" build_kubectl ;;
    etcd) cached etcd "$ETCD_VERSION" build_etcd ;;
    kubelet | kube-scheduler | kube-controller-manager | kube-proxy) cached "$1" "$KUBERNETES_VERSION" "build_$1" ;;
    tekton) cached tekton "$TEKTON_VERSION" build_tekton ;;
    tekton-resolvers) cached tekton-resolvers "$TEKTON_VERSION" build_tekton-resolvers ;;
    coredns) cached coredns "$COREDNS_VERSION" build_coredns ;;
    versitygw) cached versitygw "$VERSITYGW_VERSION" build_versitygw ;;
    envtest)
      # envtest wants kube-apiserver and etcd side by side in one directory.
      local dir=$CACHE/envtest-$KUBERNETES_VERSION-$ETCD_VERSION api etcd
      api=$(tool kube-apiserver)
      etcd=$(tool etcd)
      mkdir -p "$dir"
      ln -sf "$api/kube-apiserver" "$dir/kube-apiserver"
      ln -sf "$etcd/etcd" "$dir/etcd"
      printf '%s\n' "$dir"
      ;;
    *) echo "usage: $0 registry|oras|helm|kube-apiserver|kubectl|etcd|kubelet|kube-scheduler|kube-controller-manager|kube-proxy|tekton|tekton-resolvers|coredns|versitygw|envtest" >&2; exit 2 ;;
  esac
}

for t in "$@"; do tool "$t"; done
