#!/usr/bin/env bash
# make equivalence: every case of test/equivalence/testdata run on a PVC and
# converted on the real test bed (test/cluster), compared task by task; then
# the harness's own negative test (a step image that drops deletions must make
# the deletions case fail). Brings the test bed up and tears it down, unless
# one is already running (then it is used and left up) or KEEP=1.
#
#   CASES="linear fan-in"  run only these cases; FAULTS=0 skips the fault cases,
#                          FAULTS="retention ..." runs only these (faults/NAME.yaml;
#                          registry-evicted only when named)
#   INSTALL=0              skips the install-path test (test/install/run.sh)
#   SCALE_OUT=0            skips the S3 two-member pass (test/equivalence/scale-out.sh;
#                          SCALE_OUT_CASES=all runs every case there, not 12)
#   CONC=0                 skips the concurrency run (CONC_N copies of linear at once, 8)
#   EQ_PARALLEL=2          cases of the corpus run at once (each has its own
#                          namespace eq-<case>); the negative test and the
#                          faults run one at a time after it
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/cluster/lib.sh
t0=$SECONDS
# The test bed's registry is the chart's zot, which the module proxy does not
# serve (hack/zot.sh says where it looks): without it, skip as the Go tests
# do, or fail under CI.
if ! hack/zot.sh >/dev/null; then
  if [ "${CI:-}" = true ]; then echo "equivalence: FAILED: no zot binary (see above)" >&2; exit 1; fi
  echo "equivalence: SKIPPED: no zot binary (see above; under CI=true this fails)" >&2
  exit 0
fi
cluster_lock

started=0
# A developer's running test bed is reused; under CI one found running was
# left by something else (with its own images and chart values): start anew.
if [ "${CI:-}" = true ] && [ -d "$D" ]; then
  echo "equivalence: CI: a test bed's state is already here ($D); tearing it down first" >&2
  test/cluster/down.sh || true
fi
if ! { [ -f "$D/apiserver.pid" ] && kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; }; then
  trap 'rc=$?; [ "${KEEP:-0}" = 1 ] || test/cluster/down.sh; exit $rc' EXIT
  test/cluster/up.sh
  started=1
fi
bringup=$((SECONDS - t0))
export KUBECONFIG=$KUBECONFIG_FILE KUBECTL=$D/bin/kubectl REGISTRY_NS REGISTRY_SERVICE REGISTRY_PORT REGISTRY_SELECTOR
export KUBELET_ROOT=$D/kubelet/root
go build -o "$D/bin/equivalence" ./test/equivalence

cases=()
if [ -n "${CASES:-}" ]; then
  for c in $CASES; do cases+=("$c"); done
else
  for f in test/equivalence/testdata/*; do cases+=("$(basename "${f%.yaml}")"); done
fi

failed=()
summary=()

# The corpus, $EQ_PARALLEL cases at a time. Each case writes its log
# ($D/logs/eq-<case>.log) and, when it ends, its exit status and seconds
# (eq-<case>.done); a log is printed whole once its case has ended, so cases
# running at once never interleave their lines.
par=${EQ_PARALLEL:-2}
[[ $par =~ ^[1-9][0-9]*$ ]] || { echo "EQ_PARALLEL must be a positive number, not '$par'" >&2; exit 2; }
run_case() {
  local c=$1 p=test/equivalence/testdata/$1 s=$SECONDS rc=0 args
  if [ -d "$p" ]; then args=(-name "$c"); for f in "$p"/*.yaml; do args+=(-f "$f"); done
  else args=(-f "$p.yaml"); fi
  "$D/bin/equivalence" "${args[@]}" > "$D/logs/eq-$c.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - s))" > "$D/logs/eq-$c.done"
}
declare -A shown=()
show_ended() {
  local c
  for c in "${cases[@]}"; do
    if [ -z "${shown[$c]:-}" ] && [ -f "$D/logs/eq-$c.done" ]; then
      shown[$c]=1
      cat "$D/logs/eq-$c.log"
    fi
  done
}
for c in "${cases[@]}"; do rm -f "$D/logs/eq-$c.done"; done
c0=$SECONDS
for c in "${cases[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do wait -n || true; show_ended; done
  run_case "$c" &
done
wait
show_ended
for c in "${cases[@]}"; do
  read -r rc secs < "$D/logs/eq-$c.done"
  [ "$rc" = 0 ] || failed+=("$c")
  summary+=("$(printf '%-18s %4ds  %s' "$c" "$secs" "$(grep -E '^(PASS|FAIL|ERROR)' "$D/logs/eq-$c.log" | head -1)")")
done
corpus=$((SECONDS - c0))

# Negative test: a step image whose push forgets the baseline, so no deletion
# ever reaches the registry. The deletions case must now fail with a diff.
s=$SECONDS
b=$(mktemp -d)
mkdir -p "$b/usr/local/bin" "$b/tmp"
chmod 1777 "$b/tmp"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$b/usr/local/bin/oci-transport-step" ./test/equivalence/brokenstep
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$b/usr/local/bin/oci-transport-step.real" ./cmd/oci-transport-step
"$D/bin/imgtool" -o "$D/step-broken.tar" -root "$b" -tag "$STEP_IMAGE" -- /usr/local/bin/oci-transport-step
rm -rf "$b"
$CTR images import "$D/step-broken.tar" >/dev/null
neg=ok
"$D/bin/equivalence" -expect-diff -name deletions-broken -f test/equivalence/testdata/deletions.yaml | tee "$D/logs/eq-negative.log" || neg=failed
$CTR images import "$D/step.tar" >/dev/null
summary+=("$(printf '%-18s %4ds  %s' "negative" $((SECONDS - s)) "$(grep -E '^(PASS|FAIL|ERROR)' "$D/logs/eq-negative.log" | head -1)")")
[ $neg = ok ] || failed+=(negative)

# Concurrency (issue 12): CONC_N copies of linear at once, each compared with
# its PVC run, all must be equivalent (test/equivalence/concurrency.sh: zot's
# RSS, the steps' push and pull seconds at p50/p99). 12 passed on 2 cores;
# make equivalence runs 8 (CONC_N), leaving room for a loaded machine.
# CONC=0 skips it.
if [ "${CONC:-1}" != 0 ]; then
  cs=$SECONDS
  if CONC_N=${CONC_N:-8} test/equivalence/concurrency.sh > "$D/logs/concurrency.log" 2>&1; then :; else failed+=(concurrency); fi
  sed -n '/^== concurrency summary/,$p' "$D/logs/concurrency.log"
  summary+=("$(printf '%-18s %4ds  %s' concurrency $((SECONDS - cs)) "$(grep -E '^(PASS|FAIL)' "$D/logs/concurrency.log" | tail -1 || echo "ERROR: see $D/logs/concurrency.log")")")
fi

# Faults, one at a time: the webhook down; a pod in another namespace
# reading and writing a run's repository (refused); zot (on the chart's default
# emptyDir) losing its pod between a producer and its consumer; zot on a
# claim restarted while a task pushes; zot's GC and retention with short
# intervals during a run; zot's emptyDir over its sizeLimit (evicted); zot's
# claim full. The chart is upgraded for the last four (lib.sh: chart) and
# put back as up.sh installed it at the end.
want() { [ "${FAULTS:-1}" = 1 ] || [[ " $FAULTS " == *" $1 "* ]]; }
# named() runs a fault only when FAULTS names it: registry-evicted waits for
# the kubelet's eviction manager to notice zot's emptyDir over its
# sizeLimit, and in one full CI run it did not within the run (the fault was
# not injected, an ERROR): until its timing is made deterministic it is not
# part of make test.
named() { [[ " ${FAULTS:-} " == *" $1 "* ]]; }
fault() { # fault NAME [harness flags...]: the case faults/NAME.yaml
  local n=$1 s=$SECONDS retries
  shift
  want "$n" || return 0
  if "$D/bin/equivalence" -name "fault-$n" "$@" -f "test/equivalence/faults/$n.yaml" | tee "$D/logs/eq-fault-$n.log"; then :; else failed+=("fault-$n"); fi
  retries=$(grep -c 'msg=retrying' "$D/logs/eq-fault-$n.log" || true)
  summary+=("$(printf '%-18s %4ds  %s' "fault-$n" $((SECONDS - s)) "$(grep -E '^(PASS|FAIL|ERROR)' "$D/logs/eq-fault-$n.log" | head -1)$([ "$n" = registry-restart ] && echo " ($retries step retries logged)")")")
}
# zot_values [helm flags...]: the chart upgraded to up.sh's values plus these
zot_values() {
  local s=$SECONDS
  if ! chart upgrade "$@" > "$D/logs/chart-upgrade.log" 2>&1; then
    cat "$D/logs/chart-upgrade.log"
    kc -n $REGISTRY_NS get pods -l "$REGISTRY_SELECTOR" -o wide || true
    kc -n $REGISTRY_NS logs deploy/$REGISTRY_SERVICE --tail=20 || true
    return 1
  fi
  echo "  (chart upgraded in $((SECONDS - s))s: ${*:-back to up.sh values})"
}
# zot_on_claim [SIZE]: zot with storage.type pvc. The claim the chart
# creates gets a local volume of a class of its own (eq-zot): the test bed's
# default hostPath class makes 0750 root:root directories and the kubelet
# applies no fsGroup to hostPath volumes, so zot, which runs as 65532, could
# not write there (it exits: permission denied). A local volume gets fsGroup
# as a CSI volume does. With SIZE the volume is a file system of that size
# (tmpfs), which fills up. Its directory goes with the test bed (down.sh
# unmounts and removes /tmp/hostpath-provisioner).
zot_on_claim() {
  local name=eq-zot-$(date +%H%M%S) dir
  dir=/tmp/hostpath-provisioner/eq-local/$name
  mkdir -p "$dir"
  if [ -n "${1:-}" ]; then mount -t tmpfs -o size="$1",mode=755 "$name" "$dir"; fi
  chmod 755 "$dir"
  # an earlier case's claim (the chart deletes it when zot leaves it) and volume
  if kc -n $REGISTRY_NS get pvc $REGISTRY_SERVICE >/dev/null 2>&1; then zot_values || return 1; fi
  kc delete pv -l eq-zot --ignore-not-found --wait=false >/dev/null
  kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: eq-zot}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: $name, labels: {eq-zot: "true"}}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: eq-zot
  local: {path: $dir}
  nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE]}]}]}}
EOF
  zot_values --set zot.storage.type=pvc --set zot.storage.pvc.storageClassName=eq-zot
}
# not_up NAME WHAT: a fault case that could not run because zot did not come up
not_up() {
  failed+=("fault-$1")
  summary+=("$(printf '%-18s %4s  %s' "fault-$1" - "ERROR: zot $2 did not come up (chart upgrade)")")
}
if [ "${FAULTS:-1}" != 0 ]; then
  HELM=$(hack/tools.sh helm)/helm
  # on the chart's defaults: zot on its emptyDir
  fault webhook-down -fault webhook-down
  fault registry-data-lost -fault registry-data-lost:produce -v
  fault cross-namespace -fault cross-namespace
  changed=0
  if want registry-restart; then
    changed=1
    if zot_on_claim; then fault registry-restart -fault registry-restart:during -v; else not_up registry-restart "on a claim"; fi
  fi
  if want retention; then
    # back on an emptyDir, GC every 15 s, tags kept 100 s after their push
    # (faults/retention.yaml says why these numbers)
    changed=1
    if zot_values --set zot.gc.interval=15s --set zot.gc.delay=10s --set zot.retention.delay=10s --set zot.retention.keepPushedWithin=100s; then
      fault retention -fault retention
    else not_up retention "with short GC intervals"; fi
  fi
  if named registry-evicted; then
    # the chart's emptyDir, with a sizeLimit of 20Mi: one push of the case fits
    changed=1
    if zot_values --set zot.storage.emptyDir.sizeLimit=20Mi; then fault registry-evicted -fault registry-evicted:grow -v; else not_up registry-evicted "with a 20Mi emptyDir"; fi
  fi
  if want registry-full; then
    # a claim of 20 MiB (tmpfs: 20m): room for one push of the case, not two
    changed=1
    if zot_on_claim 20m; then fault registry-full -fault registry-full:grow; else not_up registry-full "on a 20 MiB claim"; fi
  fi
  if [ $changed = 1 ]; then
    zot_values || failed+=(chart-restore)
    kc delete pv -l eq-zot --ignore-not-found --wait=false >/dev/null
    kc delete storageclass eq-zot --ignore-not-found >/dev/null
    for m in $(awk '$5 ~ "^/tmp/hostpath-provisioner/eq-local/eq-zot-" {print $5}' /proc/self/mountinfo); do umount -l "$m"; done
  fi
fi

# zot on S3 with two members (issue 12): versitygw in eq-s3, the chart with
# zot.replicas 2, cases of the corpus again (<case>-s3; SCALE_OUT_CASES), the member owning a run's
# repository deleted mid-push (registry-member-restart), the chart put back
# (test/equivalence/scale-out.sh). SCALE_OUT=0 skips it.
if [ "${SCALE_OUT:-1}" != 0 ]; then source test/equivalence/scale-out.sh; fi

# The install path a user follows (README "Install"): make push-images to a
# registry on the node, the chart upgraded to those digests, a labelled run
# Succeeded on them, the chart put back (test/install/run.sh). INSTALL=0 skips.
if [ "${INSTALL:-1}" != 0 ]; then
  is=$SECONDS
  if test/install/run.sh > "$D/logs/install.log" 2>&1; then ir=PASS; else ir=FAIL; failed+=(install); cat "$D/logs/install.log"; fi
  summary+=("$(printf '%-18s %4ds  %s' install $((SECONDS - is)) "$ir: make push-images to a registry on the node, chart from its digests, labelled run Succeeded")")
fi

echo
echo "== equivalence summary (bring-up ${bringup}s$([ $started = 1 ] || echo ', cluster was already up'); corpus ${corpus}s, $par at a time)"
printf '%s\n' "${summary[@]}"
echo "total $((SECONDS - t0))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all cases passed (equivalent, or the fault's outcome); the negative test failed as it must"
