#!/usr/bin/env bash
# test/equivalence/concurrency.sh (issue 12): CONC_N copies of one case run at
# once on the test bed, each through the harness in its own namespace
# (eq-conc-1..N: a PVC run, then its converted run, compared), all of which
# must be equivalent; meanwhile zot's RSS and the node's load are sampled every
# second. Prints N, the wall time, pass/fail, zot's RSS (peak, median), the
# injected steps' push and pull total_seconds (p50/p99, from the harness's -v
# lines) and the harness's PVC/converted run durations (p50/p99). Exits 1 if a
# copy is not equivalent (or ends in an error).
#
# Needs a running test bed (make cluster-up, or KEEP=1 make equivalence);
# run.sh may call it while its bed is up (it then holds the test bed lock and
# this script uses it as is); standalone it takes the lock itself (waiting as
# run.sh does).
#
#   CONC_N=12                     copies at once (12: the largest of 4, 8, 12
#                                 tried on this 2-core machine, all passing
#                                 well within the harness's timeout; README
#                                 says the numbers)
#   CONC_CASE=testdata/linear.yaml  the case each copy runs (why linear: README)
#   CONC_TIMEOUT=6m               the harness's -timeout of each run (its default)
#   CONC_BUILD=1                  rebuild $D/bin/equivalence from the tree first
#                                 (default: use the one run.sh built; build if none)
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/cluster/lib.sh

N=${CONC_N:-12}
CASE=${CONC_CASE:-test/equivalence/testdata/linear.yaml}
TIMEOUT=${CONC_TIMEOUT:-6m}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "CONC_N must be a positive number, not '$N'" >&2; exit 2; }
[ -f "$CASE" ] || CASE=test/equivalence/$CASE
[ -f "$CASE" ] || { echo "concurrency: no case file ${CONC_CASE}" >&2; exit 2; }

if ! { [ -f "$D/apiserver.pid" ] && kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; }; then
  echo "concurrency: no test bed running (make cluster-up, or KEEP=1 make equivalence)" >&2
  exit 2
fi
# run.sh holds the lock on its fd 9, which we inherit: taking it again on a new
# descriptor would wait for our own parent.
if [ "$(readlink /proc/$$/fd/9 2>/dev/null)" != "$CACHE_BASE/cluster.lock" ]; then cluster_lock; fi

export KUBECONFIG=${KUBECONFIG:-$KUBECONFIG_FILE} KUBECTL=${KUBECTL:-$D/bin/kubectl}
export REGISTRY_NS REGISTRY_SERVICE REGISTRY_PORT REGISTRY_SELECTOR
export KUBELET_ROOT=${KUBELET_ROOT:-$D/kubelet/root}
mkdir -p "$D/logs"
# The harness run.sh built for this test bed ($D is wiped on every bring-up);
# built here only when missing (or CONC_BUILD=1): rebuilding on every call
# would pick up whatever half-done edit the shared checkout holds.
if [ "${CONC_BUILD:-0}" = 1 ] || [ ! -x "$D/bin/equivalence" ]; then go build -o "$D/bin/equivalence" ./test/equivalence; fi

work=$D/logs/conc
rm -rf "$work"
mkdir -p "$work"

# zot_pid: the zot process of the chart's registry pod (the pod's UID is in the
# process's cgroup path; the install test's own registry on the node is not it)
zot_pid() {
  local uid p
  uid=$(kc -n "$REGISTRY_NS" get pods -l "$REGISTRY_SELECTOR" --field-selector=status.phase=Running \
    -o jsonpath='{.items[0].metadata.uid}' 2>/dev/null) || return 1
  [ -n "$uid" ] || return 1
  for p in $(pgrep -f 'zot serve'); do
    if tr '-' '_' < "/proc/$p/cgroup" 2>/dev/null | grep -q "${uid//-/_}"; then echo "$p"; return 0; fi
  done
  return 1
}
# sampler: about every second (slower under load) "epoch rss_kib load1" into $work/samples
sampler() {
  local pid='' rss
  while :; do
    if [ -z "$pid" ] || [ ! -d "/proc/$pid" ]; then pid=$(zot_pid || true); fi
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    echo "$(date +%s) ${rss:--} $(cut -d' ' -f1 /proc/loadavg)" >> "$work/samples"
    sleep 1
  done
}

zpid=$(zot_pid) || { echo "concurrency: zot's process not found (pod $REGISTRY_SELECTOR in $REGISTRY_NS)" >&2; exit 2; }
rss0=$(awk '/^VmRSS:/ {print $2}' "/proc/$zpid/status")
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== concurrency: $N copies of $(basename "$CASE") at once (namespaces eq-conc-1..$N, -timeout $TIMEOUT); zot pid $zpid RSS $((rss0 / 1024)) MiB; loadavg before $load0 ($(nproc) cores)"

sampler &
spid=$!
trap 'kill $spid 2>/dev/null || true' EXIT

one() { # one I: copy I through the harness; its exit status and seconds in conc-I.done
  local i=$1 s=$SECONDS rc=0
  "$D/bin/equivalence" -name "conc-$i" -v -timeout "$TIMEOUT" -f "$CASE" > "$work/conc-$i.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - s))" > "$work/conc-$i.done"
}
w0=$SECONDS
pids=()
for i in $(seq "$N"); do one "$i" & pids+=($!); done
wait "${pids[@]}"
wall=$((SECONDS - w0))
kill $spid 2>/dev/null || true
wait $spid 2>/dev/null || true
load1=$(cut -d' ' -f1-3 /proc/loadavg)

pass=0 fail=0 failed=()
for i in $(seq "$N"); do
  read -r rc secs < "$work/conc-$i.done"
  if [ "$rc" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("conc-$i"); fi
  printf '  conc-%-3s %4ds  %s\n' "$i" "$secs" "$(grep -E '^(PASS|FAIL|ERROR)' "$work/conc-$i.log" | head -1)"
done

# pct Q: the Q-th percentile (nearest rank) of the numbers on stdin, or -
pct() { sort -g | awk -v q="$1" '{v[NR] = $1} END {if (NR == 0) {print "-"; exit} r = int(q * NR); if (r < q * NR) r++; if (r < 1) r = 1; print v[r]}'; }
# p50/p99 (n=COUNT) of the numbers on stdin
stats() { local f; f=$(mktemp); cat > "$f"; echo "p50 $(pct 0.50 < "$f")s p99 $(pct 0.99 < "$f")s (n=$(wc -l < "$f"))"; rm -f "$f"; }
# the injected steps' total_seconds, from the -v lines "task/oci-transport-push-WS: ... total_seconds=X"
steps() { cat "$work"/conc-*.log | grep -E "/oci-transport-$1-[^:]*: .*total_seconds=" | sed -E 's/.*total_seconds=([0-9.]+).*/\1/'; }
# the harness's run durations (Go durations, "1m2.3s" or "41.2s") from
# "== case ...: PVC run S in D1, converted run S in D2"; KIND 1 = PVC, 2 = converted
durs() {
  sed -nE 's/^== case .*: PVC run [^ ]+ in ([0-9.hms]+), converted run [^ ]+ in ([0-9.hms]+)$/\1 \2/p' "$work"/conc-*.log |
    awk -v k="$1" '{d = $k; s = 0
      if (d ~ /h/) {split(d, a, "h"); s += 3600 * a[1]; d = a[2]}
      if (d ~ /m/) {split(d, a, "m"); s += 60 * a[1]; d = a[2]}
      if (d ~ /s$/) s += substr(d, 1, length(d) - 1)
      printf "%.1f\n", s}'
}
rss=$(awk '$2 != "-" {print $2}' "$work/samples")
rss_peak=$(sort -n <<<"$rss" | tail -1)
rss_med=$(pct 0.50 <<<"$rss")
load_peak=$(awk '{print $3}' "$work/samples" | sort -g | tail -1)

echo "== concurrency summary"
echo "  N $N ($(basename "$CASE")), wall ${wall}s, $pass equivalent, $fail not"
echo "  zot RSS: before $((rss0 / 1024)) MiB, peak $((rss_peak / 1024)) MiB, median $((rss_med / 1024)) MiB ($(wc -l < "$work/samples") samples, 1/s)"
echo "  push total_seconds: $(steps push | stats)"
echo "  pull total_seconds: $(steps pull | stats)"
echo "  PVC run:            $(durs 1 | stats)"
echo "  converted run:      $(durs 2 | stats)"
echo "  loadavg: before $load0, peak 1-min $load_peak, after $load1 ($(nproc) cores; the machine is shared)"
echo "  logs: $work/conc-*.log, samples $work/samples (epoch rss_kib load1)"
if [ $fail -gt 0 ]; then
  echo "FAIL concurrency: ${failed[*]} not equivalent (of $N at once)"
  exit 1
fi
echo "PASS concurrency: $N copies at once, all equivalent (wall ${wall}s, zot RSS peak $((rss_peak / 1024)) MiB)"
