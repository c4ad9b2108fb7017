#!/usr/bin/env bash
# test/cluster/check-clean.sh: fails if anything of the test bed is left on the
# machine: a process, a mount, the bridge, a veth on it, a KUBE-/CNI- iptables chain.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
bad=0
# our processes all carry the state folder in their arguments; pod processes sit in kubepods cgroups
procs=$(ps -eo pid=,args= | awk -v r="$D/" 'index($0, r) && !/check-clean|awk/' || true)
pods=$(grep -l kubepods /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')
[ -n "$pods" ] && { echo "left: pod processes $pods"; bad=1; }
[ -n "$procs" ] && { echo "left: processes"; echo "$procs"; bad=1; }
mounts=$(awk -v r="$D/" -v h="/tmp/hostpath-provisioner" -v k="/var/lib/kubelet" 'index($5, r) == 1 || index($5, h) == 1 || index($5, k) == 1 {print $5}' /proc/self/mountinfo)
[ -n "$mounts" ] && { echo "left: mounts"; echo "$mounts" | head; bad=1; }
ip link show "$BRIDGE" >/dev/null 2>&1 && { echo "left: bridge $BRIDGE"; bad=1; }
for ipt in iptables-legacy ip6tables-legacy iptables-nft ip6tables-nft; do
  command -v $ipt >/dev/null || continue
  for t in filter nat mangle raw; do
    n=$($ipt -t $t -S 2>/dev/null | grep -cE 'KUBE-|CNI-' || true)
    [ "$n" != 0 ] && { echo "left: $n $ipt rules in table $t"; bad=1; }
  done
done
[ -d /var/lib/kubelet ] && { echo "left: /var/lib/kubelet"; bad=1; }
if [ $bad = 0 ]; then echo "cluster: down, machine clean (no process, mount, bridge or iptables rule left)"; fi
exit $bad
