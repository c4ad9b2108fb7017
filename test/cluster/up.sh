#!/usr/bin/env bash
# test/cluster/up.sh: a real single-node Kubernetes with Tekton, a registry and
# this project's chart, on this machine only (make cluster-up).
#
# Builds what is missing (hack/tools.sh caches by version), installs the Debian
# packages it needs when missing (containerd, runc, CNI plugins, iptables,
# conntrack, busybox-static), assembles every image locally (no registry, no
# pulls), starts the node with its state under $CLUSTER_ROOT and installs:
# CoreDNS (cluster names only, no forwarding), a default hostPath StorageClass,
# Tekton Pipelines and our chart as shipped, with its zot registry (the image
# assembled from hack/zot.sh's binary). test/cluster/down.sh undoes all of it.
# Nothing is reached beyond this machine: the node uses eth0's own address,
# pods a local bridge, kubelet a resolv.conf of its own.
#
#   WITH_CHART=0  stop after Tekton (no chart, so no registry either)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

if [ -f "$D/containerd.pid" ] && kill -0 "$(cat "$D/containerd.pid")" 2>/dev/null; then
  echo "a test bed is already running under $D (make cluster-down first)" >&2
  exit 1
fi

# ---- host packages (Debian)
need=()
for p in containerd:containerd runc:runc iptables:iptables conntrack:conntrack ctr:containerd; do
  command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
done
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# busybox for the images comes from busybox-static (test/cluster/busybox.sh);
# installed only when neither it nor Debian's dynamic busybox is there (they
# conflict; with the dynamic one present its static twin is unpacked instead)
dpkg-query -W -f '${Status}' busybox busybox-static 2>/dev/null | grep -q 'install ok installed' || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  ts "installing Debian packages: ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

# ---- binaries (built once, cached by version)
ts "tools (first run builds them: about 30 minutes on 2 cores; later runs: seconds)"
tool() { hack/tools.sh "$1"; }
KUBE_APISERVER=$(tool kube-apiserver)/kube-apiserver
ETCD=$(tool etcd)/etcd
KUBECTL=$(tool kubectl)/kubectl
KUBELET=$(tool kubelet)/kubelet
SCHEDULER=$(tool kube-scheduler)/kube-scheduler
KCM=$(tool kube-controller-manager)/kube-controller-manager
KUBE_PROXY=$(tool kube-proxy)/kube-proxy
TEKTON_BIN=$(tool tekton)
TEKTON_RESOLVERS_BIN=$(tool tekton-resolvers)
COREDNS=$(tool coredns)/coredns
HELM=$(tool helm)/helm
# zot, the registry the chart installs: not on the module proxy, so
# hack/zot.sh finds the binary (../shared/zot, $ZOT_BIN, or its cache) or
# says why it cannot; without it there is no test bed (run.sh skips, or
# fails under CI=true).
ZOT=$(hack/zot.sh)
ts "tools ready"

# Start from a clean state folder; built images are kept in $IMAGE_CACHE.
# A folder left by a test bed that was not torn down (a machine restored from
# a snapshot, a killed run) may still hold mounts: unmount them first, and if
# it still cannot be removed, move it aside so that this run starts clean.
if [ -e "$D" ]; then
  unmount_under "$D"
  if ! rm -rf "$D" 2>/dev/null; then
    stale=$CACHE_BASE/stale-$(date +%s)
    ts "could not remove the old state folder $D; moved to $stale"
    mv "$D" "$stale"
  fi
fi
mkdir -p "$D"/{logs,run,pki,etcd-data,cni/bin,cni/conf,cni/ipam,kubelet/root,kubelet/pki,kubelet/pod-logs,manifests,containerd/root,containerd/state,bin} "$IMAGE_CACHE"
cp "$KUBECTL" "$D/bin/kubectl"
IP=${NODE_IP:-$(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 | head -1)}
echo "$IP" > "$D/node-ip"
[ -d /tmp/hostpath_pv ] || touch "$D/hostpath_pv.new"
# Host settings this script or the node changes, restored by down.sh.
sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.conf.all.route_localnet net.ipv4.ip_forward |
  paste -d= <(printf '%s\n' vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.conf.all.route_localnet net.ipv4.ip_forward) - > "$D/sysctl.orig"

start() { # start NAME CMD...: in the background, its pid in $D/NAME.pid
  local n=$1; shift
  nohup "$@" > "$D/logs/$n.log" 2>&1 9>&- &
  echo $! > "$D/$n.pid"
}
wait_for() { # wait_for CMD [SECONDS]
  local i
  for i in $(seq "${2:-120}"); do
    if eval "$1" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "timeout waiting for: $1 (logs in $D/logs)" >&2
  exit 1
}
echo 1 > /proc/sys/net/ipv4/ip_forward
cp /usr/lib/cni/* "$D/cni/bin/"

# ---- images (docker-archive tarballs, imported into containerd)
ts "images"
go build -o "$D/bin/imgtool" ./test/cluster/imgtool
img() { # img TARBALL ROOTDIR [imgtool flags...] -- builds TARBALL once
  local out=$1 root=$2; shift 2
  [ -f "$out" ] || "$D/bin/imgtool" -o "$out" -root "$root" "$@"
}
IMGS=$IMAGE_CACHE
r=$(mktemp -d)
if [ ! -f "$IMGS/pause-1.tar" ]; then
  mkdir -p "$r/pause"
  (cd test/cluster/pause && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$r/pause/pause" .)
  img "$IMGS/pause-1.tar" "$r/pause" -tag local.test/pause:1 -- /pause
fi
bb=$(test/cluster/busybox.sh)
BUSYBOX=${bb%% *}
bbver=$(printf '%s' "${bb#* }" | tr -c 'a-zA-Z0-9.\n' '_')
b=$r/busybox
if [ ! -f "$IMGS/busybox-$bbver.tar" ] || [ ! -f "$IMGS/busybox-$bbver-nonroot.tar" ]; then
  mkdir -p "$b"/{bin,tmp,etc,root,workspace}; chmod 1777 "$b/tmp"
  cp "$BUSYBOX" "$b/bin/busybox"
  for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -s busybox "$b/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false\n' > "$b/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$b/etc/group"
fi
if [ ! -f "$IMGS/busybox-$bbver.tar" ]; then
  # busybox:1.37 is what the examples and the chart's test pod name.
  img "$IMGS/busybox-$bbver.tar" "$b" -tag local.test/busybox:1 -tag docker.io/library/busybox:1.37 -tag docker.io/library/busybox:latest -- /bin/sh
fi
# Tekton's shell image (place-scripts) is chainguard's busybox, which runs as
# 65532 (nonroot): the same busybox, as that user, so that with
# set-security-context (runAsNonRoot) it starts as it does on a real cluster.
if [ ! -f "$IMGS/busybox-$bbver-nonroot.tar" ]; then
  img "$IMGS/busybox-$bbver-nonroot.tar" "$b" -user 65532 -tag local.test/busybox-nonroot:1 -- /bin/sh
fi
# Tekton's images are ko's distroless "nonroot" images: they run as 65532.
for c in controller webhook entrypoint nop workingdirinit sidecarlogresults; do
  [ -f "$IMGS/tekton-$c-$TEKTON_VERSION-nonroot.tar" ] && continue
  t=$r/tekton-$c; mkdir -p "$t"/{ko-app,tmp,etc/ssl/certs,var/run/ko}; chmod 1777 "$t/tmp"
  cp "$TEKTON_BIN/$c" "$t/ko-app/$c"
  cp /etc/ssl/certs/ca-certificates.crt "$t/etc/ssl/certs/" 2>/dev/null || true
  img "$IMGS/tekton-$c-$TEKTON_VERSION-nonroot.tar" "$t" -user 65532 -tag "local.test/tekton/$c:$TEKTON_VERSION" -- "/ko-app/$c"
done
# Tekton's remote resolvers (cmd/resolvers), the same ko-app layout and user;
# the import loop below takes it with the other tekton-*.tar.
if [ ! -f "$IMGS/tekton-resolvers-$TEKTON_VERSION-nonroot.tar" ]; then
  t=$r/tekton-resolvers; mkdir -p "$t"/{ko-app,tmp,etc/ssl/certs,var/run/ko}; chmod 1777 "$t/tmp"
  cp "$TEKTON_RESOLVERS_BIN/tekton-resolvers" "$t/ko-app/resolvers"
  cp /etc/ssl/certs/ca-certificates.crt "$t/etc/ssl/certs/" 2>/dev/null || true
  img "$IMGS/tekton-resolvers-$TEKTON_VERSION-nonroot.tar" "$t" -user 65532 -tag "local.test/tekton/resolvers:$TEKTON_VERSION" -- /ko-app/resolvers
fi
cdver=$(basename "$(dirname "$COREDNS")")
if [ ! -f "$IMGS/$cdver.tar" ]; then
  mkdir -p "$r/coredns"; cp "$COREDNS" "$r/coredns/coredns"
  img "$IMGS/$cdver.tar" "$r/coredns" -tag local.test/coredns:1 -- /coredns
fi
# zot: the static binary hack/zot.sh found (the chart's image is
# ghcr.io/project-zot/zot; its entrypoint is the binary, the chart passes
# `serve /etc/zot/config.json`). Keyed by version and the binary's hash.
zotver=zot-$ZOT_VERSION-$(sha256sum "$ZOT" | cut -c1-12)
if [ ! -f "$IMGS/$zotver.tar" ]; then
  mkdir -p "$r/zot/usr/bin" "$r/zot/etc/zot" "$r/zot/var/lib/registry" "$r/zot/tmp"; chmod 1777 "$r/zot/tmp"
  cp "$ZOT" "$r/zot/usr/bin/zot"
  img "$IMGS/$zotver.tar" "$r/zot" -user 65532 -tag "$ZOT_IMAGE" -- /usr/bin/zot
fi
# Ours: rebuilt every time from this tree (static, as in the Dockerfile).
mkdir -p "$r/ours/webhook/usr/local/bin" "$r/ours/step/usr/local/bin" "$r/ours/step/tmp"
chmod 1777 "$r/ours/step/tmp"
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=$OUR_TAG" -o "$r/ours/webhook/usr/local/bin/webhook" ./cmd/webhook
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=$OUR_TAG" -o "$r/ours/step/usr/local/bin/oci-transport-step" ./cmd/oci-transport-step
for d in webhook step; do mkdir -p "$r/ours/$d/etc/ssl/certs"; cp /etc/ssl/certs/ca-certificates.crt "$r/ours/$d/etc/ssl/certs/" 2>/dev/null || true; done
"$D/bin/imgtool" -o "$D/webhook.tar" -root "$r/ours/webhook" -tag "$WEBHOOK_IMAGE" -user 65532 -- /usr/local/bin/webhook
"$D/bin/imgtool" -o "$D/step.tar" -root "$r/ours/step" -tag "$STEP_IMAGE" -- /usr/local/bin/oci-transport-step
rm -rf "$r"
ts "images built"

# ---- PKI (openssl) and kubeconfigs
P=$D/pki
(
  cd "$P"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=test-bed-ca" 2>/dev/null
  printf '[ext]\nsubjectAltName = DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1,IP:%s\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth,clientAuth\n' "$IP" > apiserver.cnf
  printf '[ext]\nsubjectAltName = DNS:%s,IP:%s\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n' "$NODE" "$IP" > kubelet-serving.cnf
  printf '[ext]\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = clientAuth\n' > client.cnf
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile apiserver.cnf -extensions ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout kubelet-serving.key -out kubelet-serving.csr -subj "/CN=$NODE" 2>/dev/null
  openssl x509 -req -in kubelet-serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-serving.crt -days 30 -extfile kubelet-serving.cnf -extensions ext 2>/dev/null
  for u in "admin:/O=system:masters/CN=admin" "kubelet:/O=system:nodes/CN=system:node:$NODE" "scheduler:/CN=system:kube-scheduler" \
    "cm:/CN=system:kube-controller-manager" "proxy:/CN=system:kube-proxy" "apiserver-kubelet-client:/O=system:masters/CN=kube-apiserver-kubelet-client"; do
    n=${u%%:*}
    openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" -subj "${u#*:}" 2>/dev/null
    openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$n.crt" -days 30 -extfile client.cnf -extensions ext 2>/dev/null
  done
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)
for n in admin kubelet scheduler cm proxy; do
  f=$D/$n.kubeconfig
  "$KUBECTL" config --kubeconfig="$f" set-cluster k8s1 --server=https://127.0.0.1:6443 --certificate-authority="$P/ca.crt" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig="$f" set-credentials u --client-certificate="$P/$n.crt" --client-key="$P/$n.key" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig="$f" set-context c --cluster=k8s1 --user=u >/dev/null
  "$KUBECTL" config --kubeconfig="$f" use-context c >/dev/null
done
ts "pki done"

# ---- containerd (its own sockets and state under $D)
cat > "$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$D/run/containerd.sock"
[ttrpc]
  address = "$D/run/containerd.sock.ttrpc"
[debug]
  address = "$D/run/containerd-debug.sock"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "local.test/pause:1"
    disable_apparmor = true
    netns_mounts_under_state_dir = true
    # no CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj, so clamp it
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$D/cni/bin"
      conf_dir = "$D/cni/conf"
    # Registry hosts: $D/certs.d/<host:port>/hosts.toml, read at each pull.
    # Empty here (nothing is pulled); test/install/run.sh adds its plain-HTTP
    # registry there for the install path's pulls.
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$D/certs.d"
EOF
mkdir -p "$D/certs.d"
cat > "$D/cni/conf/10-bridge.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "k8s1", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "$SERVICE_CIDR"}, {"dst": "$IP/32"}], "dataDir": "$D/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
start containerd containerd --config "$D/containerd/config.toml"
wait_for "$CTR version" 30
for t in "$IMGS"/pause-1.tar "$IMGS/busybox-$bbver.tar" "$IMGS/busybox-$bbver-nonroot.tar" "$IMGS"/tekton-*-"$TEKTON_VERSION"-nonroot.tar "$IMGS/$cdver.tar" "$IMGS/$zotver.tar" "$D/webhook.tar" "$D/step.tar"; do
  $CTR images import "$t" >/dev/null
done
ts "containerd up, images imported"

# ---- etcd, kube-apiserver
start etcd "$ETCD" --data-dir "$D/etcd-data" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380 \
  --unsafe-no-fsync --listen-metrics-urls=http://127.0.0.1:2381
start apiserver "$KUBE_APISERVER" --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$IP" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP --kubelet-certificate-authority="$P/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=$SERVICE_CIDR --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --enable-aggregator-routing=true --allow-privileged=true --profiling=false
wait_for "kc get --raw /readyz" 120
ts "apiserver ready"

# ---- controller-manager (with the hostPath provisioner), scheduler, kube-proxy
start kcm "$KCM" --kubeconfig="$D/cm.kubeconfig" --authentication-kubeconfig="$D/cm.kubeconfig" \
  --authorization-kubeconfig="$D/cm.kubeconfig" --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" --cluster-signing-cert-file="$P/ca.crt" \
  --cluster-signing-key-file="$P/ca.key" --service-cluster-ip-range=$SERVICE_CIDR --controllers='*' \
  --enable-hostpath-provisioner=true --profiling=false
start scheduler "$SCHEDULER" --kubeconfig="$D/scheduler.kubeconfig" --authentication-kubeconfig="$D/scheduler.kubeconfig" \
  --authorization-kubeconfig="$D/scheduler.kubeconfig" --bind-address=127.0.0.1 --leader-elect=false --profiling=false
cat > "$D/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $D/proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0}
EOF
start kube-proxy "$KUBE_PROXY" --config="$D/kube-proxy.yaml"

# ---- kubelet: cgroup v1 + cgroupfs (PID 1 is not systemd), its own resolv.conf
# (nothing to ask but the cluster DNS), imported images never garbage-collected.
echo "nameserver $DNS_IP" > "$D/kubelet/resolv.conf"
cat > "$D/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$D/run/containerd.sock
failSwapOn: false
failCgroupV1: false
address: $IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
staticPodPath: $D/manifests
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $D/kubelet/resolv.conf
podLogsDir: $D/kubelet/pod-logs
imageGCHighThresholdPercent: 100
# volumes measured every 10 s (default 1m): a zot over its emptyDir's
# sizeLimit is evicted within about 20 s (fault case registry-evicted)
volumeStatsAggPeriod: 10s
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
maxPods: 110
EOF
start kubelet "$KUBELET" --config="$D/kubelet/config.yaml" --kubeconfig="$D/kubelet.kubeconfig" --root-dir="$D/kubelet/root" \
  --cert-dir="$D/kubelet/pki" --hostname-override=$NODE --node-ip="$IP" --v=1
wait_for "kc wait --for=condition=Ready node/$NODE --timeout=1s" 120
wait_for "kc get sa default -n default" 60
wait_for "[ -z \"\$(kc get node $NODE -o jsonpath='{.spec.taints}')\" ]" 60
ts "node Ready"

# ---- cluster add-ons: CoreDNS (cluster names only), StorageClass
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # No forward plugin: names outside the cluster are never looked up.
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: local.test/coredns:1
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        volumeMounts: [{name: config, mountPath: /etc/coredns}]
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF

# ---- Tekton Pipelines from its module's config/, with the local images
TEKTON_CONFIG=$(go mod download -json "github.com/tektoncd/pipeline@$TEKTON_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/config
{
  for f in "$TEKTON_CONFIG"/100-namespace/*.yaml "$TEKTON_CONFIG"/*.yaml "$TEKTON_CONFIG"/300-crds/*.yaml; do
    case $(basename "$f") in events.yaml) continue ;; esac
    cat "$f"; printf '\n---\n'
  done
} | sed -E \
  -e "s#ko://github.com/tektoncd/pipeline/cmd/([a-z]+)#local.test/tekton/\1:$TEKTON_VERSION#g" \
  -e "s#cgr.dev/chainguard/busybox@sha256:[0-9a-f]+#local.test/busybox-nonroot:1#g" \
  -e 's#^(  set-security-context): "false"#\1: "true"#' \
  -e 's#^(  running-in-environment-with-injected-sidecars): "true"#\1: "false"#' > "$D/tekton.yaml"
# set-security-context: Tekton's own containers (init containers, the
# affinity assistant) run restricted-compliant, as a cluster that enforces Pod
# Security "restricted" needs (the corpus has such a namespace).
# running-in-environment-with-injected-sidecars "false": nothing here injects
# sidecars (no service mesh), so, as Tekton's docs advise for such clusters,
# a pod without sidecars in its spec is marked ready to run its steps when it
# is created instead of after a round trip through the controller. Pods with
# sidecars still wait for them (sidecar-writes, sidecar-reads-ancestor-files).
# Measured on 6 cases at 2 at a time: 140 s -> 113 s.
grep -q '^  set-security-context: "true"' "$D/tekton.yaml" || { echo "up.sh: cannot turn on Tekton's set-security-context" >&2; exit 1; }
grep -q '^  running-in-environment-with-injected-sidecars: "false"' "$D/tekton.yaml" || { echo "up.sh: cannot turn off Tekton's running-in-environment-with-injected-sidecars" >&2; exit 1; }
kc apply --server-side -f "$D/tekton.yaml" >/dev/null
kc -n kube-system rollout status deploy/coredns --timeout=120s >/dev/null
ts "CoreDNS ready"
kc -n tekton-pipelines rollout status deploy/tekton-pipelines-controller --timeout=180s >/dev/null
kc -n tekton-pipelines rollout status deploy/tekton-pipelines-webhook --timeout=180s >/dev/null
ts "Tekton $TEKTON_VERSION ready"

# ---- Tekton's remote resolvers (git, hub, bundles, cluster, http) from the
# module's config/resolvers/, as the release's resolvers.yaml installs them:
# the local image, run as the binary itself (the release image starts it
# under /sbin/tini, which this image does not have). The cluster resolver may
# read any namespace but the platform's own (the module's default allows
# all). The bundles resolver pulls with the credentials of the
# ServiceAccount its `serviceAccount` param names (k8schain: its
# imagePullSecrets) and speaks plain HTTP only to a registry named by a
# private (RFC 1918) IP or a localhost name (go-containerregistry's rule; it
# has no insecure-registry setting): a bundle on zot is named by the zot
# Service's cluster IP, e.g. 10.96.x.y:5000/... (test/equivalence/bundles.go).
{
  for f in "$TEKTON_CONFIG"/resolvers/*.yaml; do cat "$f"; printf '\n---\n'; done
} | sed -E \
  -e "s#ko://github.com/tektoncd/pipeline/cmd/([a-z]+)#local.test/tekton/\1:$TEKTON_VERSION#g" \
  -e '/^        - \/sbin\/tini$/,/^        - --$/d' \
  -e 's#^(  blocked-namespaces): ""#\1: "kube-system,tekton-pipelines,tekton-pipelines-resolvers,tekton-oci-transport"#' > "$D/tekton-resolvers.yaml"
grep -q '/ko-app/resolvers' "$D/tekton-resolvers.yaml" && ! grep -q tini "$D/tekton-resolvers.yaml" || { echo "up.sh: cannot rewrite the resolvers' command" >&2; exit 1; }
kc apply --server-side -f "$D/tekton-resolvers.yaml" >/dev/null
kc -n tekton-pipelines-resolvers rollout status deploy/tekton-pipelines-remote-resolvers --timeout=180s >/dev/null
ts "Tekton's resolvers ready"

if [ "${WITH_CHART:-1}" = 1 ]; then
  # The chart as shipped (zot included, on its default emptyDir, with its
  # GC and retention), changed only where this machine needs it.
  # test/equivalence/run.sh upgrades the release with these values plus its
  # own for the registry fault cases (lib.sh: chart).
  cat > "$D/chart-values.yaml" <<EOF
# test/cluster/up.sh: the test bed's values on top of the chart's defaults.
webhook:
  replicas: 1   # one node
  # every admission in the webhook's log
  logLevel: 1
  # our images, built from the tree above and imported: never pulled
  image: {repository: "${WEBHOOK_IMAGE%:*}", tag: "$OUR_TAG", pullPolicy: Never}
steps:
  image: {repository: "${STEP_IMAGE%:*}", tag: "$OUR_TAG"}
zot:
  # assembled from hack/zot.sh's binary (the same v2.1.20 as ghcr.io/project-zot/zot)
  image: {repository: "${ZOT_IMAGE%:*}", tag: "$ZOT_VERSION", pullPolicy: Never}
test:
  image: {repository: local.test/busybox, tag: "1"}
# Left as shipped: registry.address empty (the steps use zot's Service,
# $REGISTRY_ADDRESS, plain HTTP), registry.auth.mode token (zot checks
# the webhook's registry tokens), zot's storage (emptyDir, 10Gi), GC and
# retention (1h, 24h), NetworkPolicies (rendered; this node's bridge CNI does
# not enforce them: the harness reads zot from this machine, with a token).
EOF
  chart install --create-namespace >/dev/null
  # Ready means the webhook answers: its configuration carries a caBundle.
  wait_for "[ -n \"\$(kc get mutatingwebhookconfiguration tekton-oci-transport -o jsonpath='{.webhooks[0].clientConfig.caBundle}')\" ]" 60
  ts "chart installed (webhook ready, zot at $REGISTRY_ADDRESS)"
fi
ts "up: export KUBECONFIG=$KUBECONFIG_FILE  (kubectl: $D/bin/kubectl)"
