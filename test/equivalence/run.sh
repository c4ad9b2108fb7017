#!/usr/bin/env bash
# make equivalence: every case of test/equivalence/testdata run on a PVC and
# converted on the real test bed (test/cluster), compared task by task; then
# the harness's own negative test (a step image that drops deletions must make
# the deletions case fail). Brings the test bed up and tears it down, unless
# one is already running (then it is used and left up) or KEEP=1.
#
#   CASES="linear fan-in"  run only these cases; FAULTS=0 skips the fault cases
#   EQ_PARALLEL=2          cases of the corpus run at once (each has its own
#                          namespace eq-<case>); the negative test and the
#                          faults run one at a time after it
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/cluster/lib.sh
t0=$SECONDS
cluster_lock

started=0
if ! { [ -f "$D/apiserver.pid" ] && kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; }; then
  trap 'rc=$?; [ "${KEEP:-0}" = 1 ] || test/cluster/down.sh; exit $rc' EXIT
  test/cluster/up.sh
  started=1
fi
bringup=$((SECONDS - t0))
export KUBECONFIG=$KUBECONFIG_FILE KUBECTL=$D/bin/kubectl REGISTRY_NS
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

# Faults: the registry pod deleted while a run is in flight; the webhook down;
# the registry's data lost between a producer and its consumer.
if [ "${FAULTS:-1}" = 1 ]; then
  for f in "registry-restart -fault registry-restart:during -v" "webhook-down -fault webhook-down" \
           "registry-data-lost -fault registry-data-lost:produce -v"; do
    set -- $f
    n=$1; shift
    s=$SECONDS
    if "$D/bin/equivalence" -name "fault-$n" "$@" -f "test/equivalence/faults/$n.yaml" | tee "$D/logs/eq-fault-$n.log"; then :; else failed+=("fault-$n"); fi
    retries=$(grep -c 'msg=retrying' "$D/logs/eq-fault-$n.log" || true)
    summary+=("$(printf '%-18s %4ds  %s' "fault-$n" $((SECONDS - s)) "$(grep -E '^(PASS|FAIL|ERROR)' "$D/logs/eq-fault-$n.log" | head -1)$([ "$n" = registry-restart ] && echo " ($retries step retries logged)")")")
  done
fi

echo
echo "== equivalence summary (bring-up ${bringup}s$([ $started = 1 ] || echo ', cluster was already up'); corpus ${corpus}s, $par at a time)"
printf '%s\n' "${summary[@]}"
echo "total $((SECONDS - t0))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all cases equivalent; the negative test failed as it must"
