# Shared settings of the test bed scripts (sourced, not run).
# The node's state lives under $CLUSTER_ROOT; built images under $IMAGE_CACHE
# (kept between runs, keyed by version or content).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE_BASE=${XDG_CACHE_HOME:-$HOME/.cache}/tekton-oci-transport
CLUSTER_ROOT=${CLUSTER_ROOT:-$CACHE_BASE/cluster}
# The physical path: the kernel lists mounts by it (/proc/self/mountinfo), and
# down.sh finds the node's mounts by this prefix; through a symlinked cache
# they would not match and would be left behind.
CLUSTER_ROOT=$(realpath -m "$CLUSTER_ROOT")
IMAGE_CACHE=${IMAGE_CACHE:-$CACHE_BASE/images}
D=$CLUSTER_ROOT
KUBECONFIG_FILE=$D/admin.kubeconfig
CTR="ctr -a $D/run/containerd.sock -n k8s.io"

# Addresses: pods 10.88.0.0/16 on a bridge, services 10.96.0.0/16 (iptables on
# this machine only), the node on the machine's own eth0 address.
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
BRIDGE=k8s1br0
NODE=k8s1

TEKTON_VERSION=v1.15.1
CHART_NS=tekton-oci-transport
# The registry is the chart's own zot (release tekton-oci-transport): its
# Service, the address the steps get by default, and its pods' labels.
ZOT_VERSION=$(sed -n 's/^ZOT_VERSION=//p' "$REPO/hack/zot.sh")
ZOT_IMAGE=local.test/zot:$ZOT_VERSION
REGISTRY_NS=$CHART_NS
REGISTRY_SERVICE=tekton-oci-transport-zot
REGISTRY_PORT=5000
REGISTRY_ADDRESS=$REGISTRY_SERVICE.$REGISTRY_NS.svc:$REGISTRY_PORT
REGISTRY_SELECTOR=app.kubernetes.io/instance=tekton-oci-transport,app.kubernetes.io/component=registry
OUR_TAG=${OUR_TAG:-dev}
WEBHOOK_IMAGE=local.test/tekton-oci-transport/webhook:$OUR_TAG
STEP_IMAGE=local.test/tekton-oci-transport/oci-transport-step:$OUR_TAG

t0=${t0:-$SECONDS}
ts() { printf '[cluster %3ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# chart install|upgrade [helm flags...]: our chart as the test bed installs it
# (the values up.sh wrote to $D/chart-values.yaml), plus the flags given (the
# fault cases change zot's storage and GC this way), waiting until it is ready.
chart() {
  local verb=$1; shift
  HELM_CACHE_HOME=$D/helm/cache HELM_CONFIG_HOME=$D/helm/config HELM_DATA_HOME=$D/helm/data \
    "$HELM" --kubeconfig "$KUBECONFIG_FILE" "$verb" tekton-oci-transport "$REPO/charts/tekton-oci-transport" \
    --namespace $CHART_NS -f "$D/chart-values.yaml" "$@" --wait --timeout 180s
}

# cluster_lock: one test bed per machine. make equivalence and make demo hold
# this lock from bring-up to teardown, so two of them (two CI runs, a CI run
# and a demo) wait for each other instead of fighting over ports, the bridge
# and iptables. The node's processes never inherit the lock (up.sh closes fd 9).
cluster_lock() {
  mkdir -p "$CACHE_BASE"
  exec 9>"$CACHE_BASE/cluster.lock"
  if ! flock -n 9; then
    echo "cluster: another test bed user holds $CACHE_BASE/cluster.lock; waiting (up to 60 min)" >&2
    flock -w 3600 9
  fi
}

# unmount_under DIR...: lazily unmounts every mount at or below each DIR,
# deepest first (a pod's volumes, netns and shm mounts, local volumes).
unmount_under() {
  local dir m
  for dir in "$@"; do
    dir=$(realpath -m "$dir")
    for m in $(awk -v r="$dir/" -v d="$dir" '$5 == d || index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
      umount -l "$m" 2>/dev/null
    done
  done
}
