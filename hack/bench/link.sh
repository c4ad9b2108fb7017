#!/usr/bin/env bash
# `hack/bench-transport.sh link` (or BENCH_LINK="..."): ours vs the oras CLI vs
# "the floor" on a loopback and on shaped links, against CNCF Distribution
# and zot, same data, same run.
#
# Links (BENCH_LINK, default "lo 1g 100m"):
#   lo    registries on 127.0.0.1 in this namespace, nothing shaped
#   1g    1 Gbit/s, 1 ms each way (RTT 2 ms)
#   100m  100 Mbit/s, 5 ms each way (RTT 10 ms)
# A shaped link is a network namespace (btlink) holding the registries,
# joined to this one by a point-to-point pair 10.213.0.1/30 (bt-h, here) <->
# 10.213.0.2/30 (bt-n, in btlink). The kernel here has no sch_netem
# (CONFIG_NET_SCH_NETEM is not set, no loadable modules), so the rate is
# shaped by `tc qdisc ... tbf` on both ends and the delay is added by
# hack/bench/linkem, a delay line between two TUN devices (TSO offload on, so
# TCP hands over segments of up to 64 KiB as over a veth). With netem
# present, `tc qdisc add dev X root netem delay Dms rate R` on both ends of a
# veth pair is the same link.
#
# Data sets (BENCH_SETS overrides, for every link): small (20 000 files) and
# big (1 GiB) on lo and 1g; small and big256 (big's first random file and
# first two text files: 128 MiB random + 128 MiB text, the same mix) on 100m,
# to keep the run short.
#
# Cases per set and registry (BENCH_REGISTRIES, default "distribution zot"):
# oras push ./data/ + oras pull (gzip); ours with zstd, gzip (big sets only),
# none, at the default --concurrency 4, and zstd at --concurrency 1 and 8
# (BENCH_CONC). The step has no compression-level flag (zstd is
# SpeedFastest, gzip BestSpeed), so no levels are varied. Every case pushes to
# and pulls from a freshly started registry with empty storage (no blob is
# ever already there).
#
# The floor, per link and set, printed next to each figure:
#   push: `tar -c | zstd -T0 > /dev/null` time + compressed bytes*8/rate + RTT
#   pull: compressed bytes*8/rate + RTT + `zstd -dc | tar -x` time of the
#         same archive from local disk
# (serial sums, as specified: a streaming tool overlaps the two halves, so it
# can beat this floor by up to the shorter half.)
#
# Stops by itself: every timed command runs under `timeout` (BENCH_CMD_TIMEOUT,
# 900 s) and the whole run under a watchdog (BENCH_TIMEOUT, 5400 s); on every
# exit path the trap stops the registries and linkem (the TUN devices and
# their qdiscs vanish with it) and deletes the namespace. It refuses to start
# if btlink, bt-h, bt-n or any address in 10.213.0.0/30 is already in use.
set -euo pipefail
cd "$(dirname "$0")/../.."

LINKS=${BENCH_LINK:-lo 1g 100m}
REGS=${BENCH_REGISTRIES:-distribution zot}
CONCS=${BENCH_CONC:-1 8}
NS=btlink
DEV_H=bt-h
DEV_N=bt-n
ADDR_H=10.213.0.1
ADDR_N=10.213.0.2
CMD_TIMEOUT=${BENCH_CMD_TIMEOUT:-900}

for l in $LINKS; do
  case $l in lo | 1g | 100m) ;; *) echo "unknown link $l (lo, 1g, 100m)" >&2; exit 2 ;; esac
done
shaped=
for l in $LINKS; do [ "$l" != lo ] && shaped=1; done
if [ -n "$shaped" ]; then
  [ "$(id -u)" = 0 ] || { echo "the shaped links need root (ip netns, tc)" >&2; exit 1; }
  busy=
  ip netns list | grep -qw "$NS" && busy="network namespace $NS exists"
  ip link show "$DEV_H" > /dev/null 2>&1 && busy="device $DEV_H exists"
  ip link show "$DEV_N" > /dev/null 2>&1 && busy="device $DEV_N exists"
  used=$( { ip -o addr; ip route; ip -all netns exec ip -o addr 2> /dev/null; } | grep -E '10\.213\.0\.[0-3]([/ ]|$)' || true)
  [ -n "$used" ] && busy="10.213.0.0/30 in use: $used"
  if [ -n "$busy" ]; then echo "refusing to start: $busy" >&2; exit 1; fi
fi

REGISTRY=$(hack/tools.sh registry)/registry
ORAS=$(hack/tools.sh oras)/oras
ZOT=
case " $REGS " in *" zot "*) ZOT=$(hack/zot.sh) ;; esac
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-link-XXXXXX")
REG_PID=
LINK_PID=
WATCHDOG=
NS_MADE=
stop_registry() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2> /dev/null || true; wait "$REG_PID" 2> /dev/null || true; REG_PID=; fi
}
stop_link() {
  if [ -n "$LINK_PID" ]; then kill "$LINK_PID" 2> /dev/null || true; wait "$LINK_PID" 2> /dev/null || true; LINK_PID=; fi
  ip link del "$DEV_H" 2> /dev/null || true
  [ -n "$NS_MADE" ] && ip -n "$NS" link del "$DEV_N" 2> /dev/null || true
}
# a case runs in a process substitution: on an early exit its subshell, and
# the timeout and tool under it, would outlive the script; stop them by pid
kill_tree() { local c; for c in $(pgrep -P "$1" 2> /dev/null); do kill_tree "$c"; done; kill "$1" 2> /dev/null || true; }
cleanup() {
  local rc=$? c
  trap - EXIT INT TERM
  for c in $(pgrep -P $$ 2> /dev/null); do kill_tree "$c"; done
  stop_registry
  stop_link
  if [ -n "$NS_MADE" ]; then ip netns del "$NS" 2> /dev/null || true; fi
  if [ -n "$WATCHDOG" ]; then kill "$WATCHDOG" 2> /dev/null || true; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# the watchdog: a subshell that takes its sleep with it when it is stopped
(
  trap 'kill "$s" 2> /dev/null; exit 0' TERM
  sleep "${BENCH_TIMEOUT:-5400}" > /dev/null 2>&1 &
  s=$!
  wait "$s" && echo "bench: watchdog: ${BENCH_TIMEOUT:-5400} s passed, stopping" >&2 && kill -TERM $$
) > /dev/null &
WATCHDOG=$!

go build -trimpath -o "$WORK/oci-transport-step" ./cmd/oci-transport-step
go build -o "$WORK/benchdata" ./test/transport/benchdata
STEP=$WORK/oci-transport-step
if [ -n "$shaped" ]; then go build -o "$WORK/linkem" ./hack/bench/linkem; fi
ZSTD=$(command -v zstd || true)
if [ -z "$ZSTD" ]; then echo "zstd CLI not found: the floor needs it" >&2; exit 1; fi

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# link parameters: rate in Mbit/s (0: none), one-way delay in ms
rate_of() { case $1 in lo) echo 0 ;; 1g) echo 1000 ;; 100m) echo 100 ;; esac; }
delay_of() { case $1 in lo) echo 0 ;; 1g) echo 1 ;; 100m) echo 5 ;; esac; }
sets_of() { if [ -n "${BENCH_SETS:-}" ]; then echo "$BENCH_SETS"; elif [ "$1" = 100m ]; then echo "small big256"; else echo "small big"; fi; }

if [ -n "$shaped" ]; then ip netns add "$NS"; NS_MADE=1; ip -n "$NS" link set lo up; fi
HOST=
link_up() { # link
  stop_link
  if [ "$1" = lo ]; then HOST=127.0.0.1; return; fi
  local rate delay
  rate=$(rate_of "$1"); delay=$(delay_of "$1")
  "$WORK/linkem" -a "$DEV_H" -b "$DEV_N" -delay "${delay}ms" > "$WORK/linkem.out" 2> "$WORK/linkem.log" &
  LINK_PID=$!
  for _ in $(seq 50); do grep -q ready "$WORK/linkem.out" 2> /dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/linkem.out" || { cat "$WORK/linkem.log" >&2; exit 1; }
  ip link set "$DEV_N" netns "$NS"
  ip addr add "$ADDR_H/30" dev "$DEV_H"
  ip link set "$DEV_H" up
  ip -n "$NS" addr add "$ADDR_N/30" dev "$DEV_N"
  ip -n "$NS" link set "$DEV_N" up
  # tbf on both ends; a 128 KiB bucket lets a 64 KiB TSO segment through whole
  tc qdisc replace dev "$DEV_H" root tbf rate "${rate}mbit" burst 128kb latency 20ms
  ip netns exec "$NS" tc qdisc replace dev "$DEV_N" root tbf rate "${rate}mbit" burst 128kb latency 20ms
  HOST=$ADDR_N
}

PORT=
reg_n=0
start_registry() { # distribution|zot
  stop_registry
  local kind=$1 dir=$WORK/reg-$((reg_n++)) listen=0.0.0.0 wrap=()
  rm -rf "$WORK"/reg-*
  mkdir -p "$dir/storage"
  if [ "$HOST" = 127.0.0.1 ]; then
    listen=127.0.0.1
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  else
    PORT=5000
    wrap=(ip netns exec "$NS")
  fi
  if [ "$kind" = distribution ]; then
    cat > "$dir/config.yml" << YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $listen:$PORT
YAML
    "${wrap[@]}" "$REGISTRY" serve "$dir/config.yml" > "$dir/log" 2>&1 &
  else
    # the chart's storage settings (dedupe, gc), no auth, no extensions
    cat > "$dir/config.json" << JSON
{"distSpecVersion": "1.1.1",
 "storage": {"rootDirectory": "$dir/storage", "dedupe": true, "gc": true},
 "http": {"address": "$listen", "port": "$PORT"},
 "log": {"level": "error"}}
JSON
    "${wrap[@]}" "$ZOT" serve "$dir/config.json" > "$dir/log" 2>&1 &
  fi
  REG_PID=$!
  for _ in $(seq 100); do curl -fs "http://$HOST:$PORT/v2/" > /dev/null 2>&1 && return; sleep 0.1; done
  echo "$kind did not come up on $HOST:$PORT" >&2; cat "$dir/log" >&2; exit 1
}

# data: generated once; big256 is hard links to a quarter of big
need_big=
for l in $LINKS; do case " $(sets_of "$l") " in *" big"*) need_big=1 ;; esac; done
echo "generating data in $WORK ..." >&2
if [ -n "$need_big" ]; then "$WORK/benchdata" big "$WORK/data/big/data"; fi
"$WORK/benchdata" small "$WORK/data/small/data"
if [ -n "$need_big" ]; then
  mkdir -p "$WORK/data/big256/data"
  for f in random-0.bin text-0.log text-1.log; do ln "$WORK/data/big/data/$f" "$WORK/data/big256/data/$f"; done
fi
sync

T=timeout
run_ours() { # set comp conc -> "push pull sentbytes"
  local set=$1 comp=$2 conc=$3 src=$WORK/data/$1/data dst st pst t0 t1 t1b t2
  mkdir -p "$WORK/out" "$WORK/state"
  dst=$(mktemp -d "$WORK/out/ours-XXXXXX"); st=$(mktemp -d "$WORK/state/pull-XXXXXX"); pst=$(mktemp -d "$WORK/state/push-XXXXXX")
  sync
  t0=$(now)
  $T "$CMD_TIMEOUT" "$STEP" push --registry "$HOST:$PORT" --plain-http --repository bench/ours --tag t --task t \
    --mount "$src" --state "$pst" --compression "$comp" --concurrency "$conc" 2> "$WORK/ours-push.log" ||
    { cat "$WORK/ours-push.log" >&2; exit 1; }
  t1=$(now)
  sync
  t1b=$(now)
  $T "$CMD_TIMEOUT" "$STEP" pull --registry "$HOST:$PORT" --plain-http --repository bench/ours --from t \
    --mount "$dst" --state "$st" --concurrency "$conc" 2> "$WORK/ours-pull.log" ||
    { cat "$WORK/ours-pull.log" >&2; exit 1; }
  t2=$(now)
  diff -r "$src" "$dst" > /dev/null || { echo "MISMATCH after our pull ($set $comp $conc)" >&2; exit 1; }
  # a pulled big tree goes now (a few large files: cheap); the 20 000 small files at the end of the link
  [ "$set" = small ] || rm -rf "$dst"
  local sent
  sent=$(grep -o ' compressed=[0-9]*' "$WORK/ours-push.log" | head -1 | cut -d= -f2)
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1b" "$t2") ${sent:-0}"
}
run_oras() { # set -> "push pull blobbytes"
  local set=$1 dst t0 t1 t1b t2
  mkdir -p "$WORK/out"
  dst=$(mktemp -d "$WORK/out/oras-XXXXXX")
  sync
  t0=$(now)
  (cd "$WORK/data/$set" && $T "$CMD_TIMEOUT" "$ORAS" push --plain-http "$HOST:$PORT/bench/oras:t" ./data/ > "$WORK/oras-push.log" 2>&1) ||
    { cat "$WORK/oras-push.log" >&2; exit 1; }
  t1=$(now)
  sync
  t1b=$(now)
  $T "$CMD_TIMEOUT" "$ORAS" pull --plain-http -o "$dst" "$HOST:$PORT/bench/oras:t" > "$WORK/oras-pull.log" 2>&1 ||
    { cat "$WORK/oras-pull.log" >&2; exit 1; }
  t2=$(now)
  diff -r "$WORK/data/$set/data" "$dst/data" > /dev/null || { echo "MISMATCH after oras pull ($set)" >&2; exit 1; }
  [ "$set" = small ] || rm -rf "$dst"
  local sent
  sent=$(curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$HOST:$PORT/v2/bench/oras/manifests/t" |
    python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))' 2> /dev/null || echo 0)
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1b" "$t2") $sent"
}
# the floor for one set on the current link: "pushfloor pullfloor bytes"
floor() { # link set
  local link=$1 set=$2 src=$WORK/data/$2/data arch=$WORK/floor-$2.tar.zst rate delay
  rate=$(rate_of "$link"); delay=$(delay_of "$link")
  [ -f "$arch" ] || tar -cf - -C "$src" . | "$ZSTD" -T0 -q -c > "$arch"
  local bytes t0 t1 t2 t3 xfer dst
  mkdir -p "$WORK/out"
  dst=$(mktemp -d "$WORK/out/floor-XXXXXX")
  bytes=$(stat -c %s "$arch")
  sync
  t0=$(now)
  tar -cf - -C "$src" . | "$ZSTD" -T0 -q -c > /dev/null
  t1=$(now)
  sync
  t2=$(now)
  "$ZSTD" -dc -q "$arch" | tar -xf - -C "$dst"
  t3=$(now)
  [ "$set" = small ] || rm -rf "$dst"
  xfer=$(awk -v b="$bytes" -v r="$rate" -v d="$delay" 'BEGIN { if (r == 0) print 0; else printf "%.3f", b * 8 / (r * 1e6) + 2 * d / 1000 }')
  awk -v c="$(elapsed "$t0" "$t1")" -v x="$xfer" -v e="$(elapsed "$t2" "$t3")" -v b="$bytes" \
    'BEGIN { printf "%.2f %.2f %d\n", c + x, x + e, b }'
}

mib() { awk -v b="$1" 'BEGIN { if (b > 0) printf "%.0f", b / 1048576; else printf "-" }'; }
hdr() { printf '%-34s %7s %7s %7s %7s %8s %8s %8s %8s\n' case push floor pull floor total floor "vs oras" "sent MiB"; }
row() { # label push pull pushfloor pullfloor oras_total bytes
  awk -v l="$1" -v p="$2" -v q="$3" -v fp="$4" -v fq="$5" -v o="$6" -v m="$(mib "$7")" 'BEGIN {
    t = p + q; r = (o > 0 && t > 0) ? sprintf("%.1fx", o / t) : "-"
    printf "%-34s %7.2f %7.2f %7.2f %7.2f %8.2f %8.2f %8s %8s\n", l, p, fp, q, fq, t, fp + fq, r, m }'
}

echo "cpus: $(nproc), zstd: $("$ZSTD" --version | head -1), load at start: $(load)"
for link in $LINKS; do
  link_up "$link"
  rate=$(rate_of "$link"); delay=$(delay_of "$link")
  if [ "$link" = lo ]; then desc="loopback 127.0.0.1, unshaped"; else desc="${rate} Mbit/s, ${delay} ms each way (RTT $((2 * delay)) ms): tbf both ends + linkem"; fi
  echo
  echo "== link $link: $desc"
  for set in $(sets_of "$link"); do
    echo
    echo "-- $link / $set, load before: $(load)"
    read -r fp fq fb < <(floor "$link" "$set")
    echo "floor: push $fp s, pull $fq s (zstd -T0 archive: $(mib "$fb") MiB)"
    hdr
    big=
    [ "$set" != small ] && big=1
    for reg in $REGS; do
      start_registry "$reg"
      read -r op opl ob < <(run_oras "$set")
      ot=$(awk -v a="$op" -v b="$opl" 'BEGIN { printf "%.2f", a + b }')
      row "$reg: oras CLI (gzip)" "$op" "$opl" "$fp" "$fq" "$ot" "$ob"
      cases="zstd:4"
      [ -n "$big" ] && cases="$cases gzip:4"
      cases="$cases none:4"
      for c in $CONCS; do cases="$cases zstd:$c"; done
      for cc in $cases; do
        start_registry "$reg"
        read -r p pl b < <(run_ours "$set" "${cc%:*}" "${cc#*:}")
        row "$reg: ours (${cc%:*}, conc ${cc#*:})" "$p" "$pl" "$fp" "$fq" "$ot" "$b"
      done
    done
    echo "-- $link / $set, load after: $(load)"
  done
  stop_registry
  rm -rf "$WORK/out" "$WORK/state"
  sync
  sleep 5
done
echo
echo "times in s; floor = tar|zstd -T0 + bytes*8/rate + RTT (push), bytes*8/rate + RTT + zstd -dc|tar -x (pull)"
echo "sent MiB: ours = the push log's compressed bytes; oras = the layer sizes in its manifest"
echo "load at end: $(load)"
