#!/usr/bin/env bash
# test/cluster/down.sh: stops everything up.sh started and leaves the machine as
# it was: processes (by the PIDs up.sh recorded), containers and their shims,
# mounts under the state folder, the pod bridge, the iptables rules kubelet and
# kube-proxy made, the cgroups of the pods, the sysctls, and the folders kubelet
# and containerd hard-code. Idempotent; safe when nothing runs. Then checks.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
[ -d "$D" ] || { echo "cluster: nothing to tear down"; exit 0; }
KUBE_PROXY=$(ls -d "$CACHE_BASE"/tools/kube-proxy-*/kube-proxy 2>/dev/null | head -1)

stop() { # stop NAME: SIGTERM the pid in $D/NAME.pid, wait up to 10 s, then SIGKILL
  local f=$D/$1.pid p i
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  fi
  rm -f "$f"
}
stop kubelet
stop kube-proxy
stop kcm
stop scheduler
mkdir -p "$D/logs"
[ -n "$KUBE_PROXY" ] && "$KUBE_PROXY" --cleanup > "$D/logs/kube-proxy-cleanup.log" 2>&1
if [ -S "$D/run/containerd.sock" ] && [ -f "$D/containerd.pid" ]; then
  for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $($CTR containers ls -q 2>/dev/null); do $CTR containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd
# shims of this containerd (found by its socket path in their arguments), by PID
for p in $(ps -eo pid=,args= | awk -v s="$D/run/containerd.sock" 'index($0, "containerd-shim") && index($0, s) {print $1}'); do
  kill -9 "$p" 2>/dev/null
done
stop apiserver
stop etcd
# network namespaces of the pods (CNI teardown did not run for killed sandboxes)
unmount_under "$D" /tmp/hostpath-provisioner
ip link del "$BRIDGE" 2>/dev/null
for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link show "$v" 2>/dev/null | grep -q "master $BRIDGE" && ip link del "$v" 2>/dev/null
done
# iptables: only the chains kubelet and kube-proxy create (KUBE-*, CNI-*) and
# the jumps into them; rules that were here before are left alone.
for ipt in iptables-legacy ip6tables-legacy iptables-nft ip6tables-nft; do
  command -v $ipt >/dev/null || continue
  for t in filter nat mangle raw security; do
    $ipt -t $t -S 2>/dev/null | grep -E '^-A ' | grep -E 'KUBE-|CNI-|k8s1' | grep -vE '^-A (KUBE-|CNI-)' | sed 's/^-A/-D/' |
      while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null; done
    for c in $($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ {print $2}'); do $ipt -t $t -F "$c" 2>/dev/null; done
    for c in $($ipt -t $t -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ {print $2}'); do $ipt -t $t -X "$c" 2>/dev/null; done
  done
done
conntrack -F >/dev/null 2>&1
# cgroups of the pods (kubelet: kubepods; containerd: k8s.io) in every hierarchy
for h in /sys/fs/cgroup/*; do
  for c in kubepods k8s.io; do [ -d "$h/$c" ] && find "$h/$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
done
# sysctls back to what up.sh found
if [ -f "$D/sysctl.orig" ]; then
  while IFS= read -r kv; do sysctl -q -w "$kv" >/dev/null 2>&1; done < "$D/sysctl.orig"
fi
# folders kubelet and containerd 1.6 hard-code outside the state folder
rm -rf /var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /tmp/hostpath-provisioner
# the volumes kube-controller-manager's hostPath provisioner made (its path is
# hard-coded); up.sh recorded whether the folder was there before
if [ -f "$D/hostpath_pv.new" ]; then rm -rf /tmp/hostpath_pv; fi
rm -rf "$D"
exec "$(dirname "$0")/check-clean.sh"
