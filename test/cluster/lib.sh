# Shared settings of the test bed scripts (sourced, not run).
# The node's state lives under $CLUSTER_ROOT; built images under $IMAGE_CACHE
# (kept between runs, keyed by version or content).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE_BASE=${XDG_CACHE_HOME:-$HOME/.cache}/tekton-oci-transport
CLUSTER_ROOT=${CLUSTER_ROOT:-$CACHE_BASE/cluster}
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
REGISTRY_NS=oci-registry
REGISTRY_ADDRESS=registry.$REGISTRY_NS.svc.cluster.local:5000
CHART_NS=tekton-oci-transport
OUR_TAG=${OUR_TAG:-dev}
WEBHOOK_IMAGE=local.test/tekton-oci-transport/webhook:$OUR_TAG
STEP_IMAGE=local.test/tekton-oci-transport/oci-transport-step:$OUR_TAG

t0=${t0:-$SECONDS}
ts() { printf '[cluster %3ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

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
