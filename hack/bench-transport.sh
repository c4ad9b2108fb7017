#!/usr/bin/env bash
# Benchmark: oci-transport-step vs the stock oras CLI (`oras push ./dir/` +
# `oras pull`) against a real CNCF Distribution registry on 127.0.0.1, in the
# same run, on the same data:
#   big    1 GiB: 512 MiB random (4 files) + 512 MiB compressible text (8 files)
#   small  20 000 small files
# plus our no-change push and the pull+push of an empty workspace.
# Nothing here asserts time; it prints a table and the ratios. Every timed
# command starts after a `sync`, and pulled trees are only deleted at the end
# (deleting 20 000 files leaves the file system busy for seconds after
# `sync`, which would bill the next case), so no case pays for an earlier one.
#
# `hack/bench-transport.sh rss` (or BENCH_RSS=1) measures instead the peak
# RSS and the wall time of our push and pull (no oras) at the default
# concurrency, without a memory limit and under a 128 MiB budget
# (--memory-budget 128Mi: the chart's step limit, GOMEMLIMIT 96 MiB), on
#   big    1 GiB (as above)
#   huge   8 GiB: 4 x 1 GiB random + 32 x 128 MiB text
#   many   200 000 small files
# as far as the disk holds them (data + pulled copy + registry: about 3, 22
# and 3 GiB; BENCH_SETS="big many" chooses). BENCH_BASE=<git ref> measures
# that commit's step too (its budget case with GOMEMLIMIT=96MiB, what a
# 128 MiB container gives it); BENCH_REPS=N (default 1) gives medians.
#
# `hack/bench-transport.sh tarx` times our pull of the 20 000 small files
# (BENCH_SETS=many: 200 000) against the floor of file creation on this
# disk: `tar -x` of the same files from a local tar, and `zstd -dc | tar -x`
# (zstd CLI, if present), interleaved with our pull (and BENCH_BASE's), each
# BENCH_REPS times (default 5), after a `sync`; trees are deleted only at
# the end. It prints the median wall and CPU (user + system) seconds.
# BENCH_DIR chooses the file system (the data, the registry and the pulled
# trees go there).
#
# `hack/bench-transport.sh link` (or BENCH_LINK="lo 1g 100m") runs
# hack/bench/link.sh instead: ours (zstd, gzip, none; concurrency 1/4/8) vs
# oras vs "the floor" (tar | zstd -T0, the link's raw transfer time, tar -x)
# against Distribution and zot, on loopback and on links shaped to
# 1 Gbit/s 1 ms and 100 Mbit/s 5 ms (network namespace + tc tbf + a delay
# line; needs root). Its header says the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-}
if [ -n "${BENCH_RSS:-}" ]; then MODE=rss; fi
if [ "$MODE" = link ] || [ -n "${BENCH_LINK:-}" ]; then exec hack/bench/link.sh; fi

REGISTRY=$(hack/tools.sh registry)/registry
ORAS=$(hack/tools.sh oras)/oras
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-transport-XXXXXX")
REG_PID=
cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

go build -trimpath -o "$WORK/oci-transport-step" ./cmd/oci-transport-step
go build -o "$WORK/benchdata" ./test/transport/benchdata
STEP=$WORK/oci-transport-step
BASE_STEP=
if { [ "$MODE" = rss ] || [ "$MODE" = tarx ]; } && [ -n "${BENCH_BASE:-}" ]; then
  mkdir -p "$WORK/base-src"
  git archive "$BENCH_BASE" | tar -x -C "$WORK/base-src"
  (cd "$WORK/base-src" && go build -trimpath -o "$WORK/base-step" ./cmd/oci-transport-step)
  BASE_STEP=$WORK/base-step
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
ADDR=127.0.0.1:$PORT
cat > "$WORK/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: $ADDR
YAML
"$REGISTRY" serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fs "http://$ADDR/v2/" > /dev/null 2>&1 && break; sleep 0.1; done

if [ "$MODE" = tarx ]; then
  [ -x /usr/bin/time ] || { echo "tarx needs GNU time (/usr/bin/time)" >&2; exit 1; }
  set=${BENCH_SETS:-small}
  echo "generating $set in $WORK ..." >&2
  "$WORK/benchdata" "$set" "$WORK/data/$set"
  tar -cf "$WORK/$set.tar" -C "$WORK/data/$set" .
  ZSTD=$(command -v zstd || true)
  if [ -n "$ZSTD" ]; then "$ZSTD" -q -T0 "$WORK/$set.tar" -o "$WORK/$set.tar.zst"; fi
  "$STEP" push --registry "$ADDR" --plain-http --repository bench/tarx --tag t --task t \
    --mount "$WORK/data/$set" --state "$WORK/state/tarx-push" 2> "$WORK/tarx-push.log" ||
    { cat "$WORK/tarx-push.log" >&2; exit 1; }
  cases=(tar-x)
  if [ -n "$ZSTD" ]; then cases+=(zstd-tar-x); fi
  if [ -n "$BASE_STEP" ]; then cases+=(base); fi
  cases+=(new)
  k=0
  run() { # case -> "wall cpu"
    local dst=$WORK/out/tarx-$((k++)) step=$STEP
    mkdir -p "$dst"
    sync
    case $1 in
      tar-x) /usr/bin/time -f '%e %U %S' -o "$WORK/t" tar -xf "$WORK/$set.tar" -C "$dst" ;;
      zstd-tar-x) /usr/bin/time -f '%e %U %S' -o "$WORK/t" sh -c '"$0" -dcq "$1" | tar -xf - -C "$2"' "$ZSTD" "$WORK/$set.tar.zst" "$dst" ;;
      *)
        if [ "$1" = base ]; then step=$BASE_STEP; fi
        /usr/bin/time -f '%e %U %S' -o "$WORK/t" "$step" pull --registry "$ADDR" --plain-http --repository bench/tarx \
          --from t --mount "$dst/ws" --state "$dst/st" 2> "$WORK/tarx-pull.log" || { cat "$WORK/tarx-pull.log" >&2; exit 1; }
        diff -r "$WORK/data/$set" "$dst/ws" > /dev/null || { echo "MISMATCH after pull ($1)" >&2; exit 1; }
        ;;
    esac
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$WORK/t"
  }
  median() { sort -n | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'; }
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  for _ in $(seq "${BENCH_REPS:-5}"); do
    for c in "${cases[@]}"; do echo "$c $(run "$c")" >> "$WORK/tarx"; done
  done
  printf '\n%-12s %10s %10s   %s\n' case "wall s" "CPU s" "all wall s"
  for c in "${cases[@]}"; do
    w=$(awk -v c="$c" '$1 == c { print $2 }' "$WORK/tarx" | median)
    u=$(awk -v c="$c" '$1 == c { print $3 }' "$WORK/tarx" | median)
    printf '%-12s %10s %10s   %s\n' "$c" "$w" "$u" "$(awk -v c="$c" '$1 == c { printf "%s ", $2 }' "$WORK/tarx")"
  done
  echo "set $set, medians of ${BENCH_REPS:-5} interleaved runs; CPU = user + system"
  echo "cpus: $(nproc), load before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

if [ "$MODE" = rss ]; then
  # peak RSS (KiB) and wall seconds of a command: GNU time when present,
  # else the peak (VmHWM) polled from /proc while it runs
  measure() { # out-file cmd...
    local out=$1; shift
    if [ -x /usr/bin/time ]; then
      /usr/bin/time -f '%M %e' -o "$out" "$@"
    else
      local t0 pid hwm=0 v rc
      t0=$EPOCHREALTIME
      "$@" & pid=$!
      while kill -0 "$pid" 2>/dev/null; do
        v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
        sleep 0.05
      done
      wait "$pid"; rc=$?
      echo "$hwm $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')" > "$out"
      return $rc
    fi
  }
  avail_gib() { df -Pk "$WORK" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
  need() { case $1 in big) echo 3 ;; huge) echo 22 ;; many) echo 3 ;; esac; }
  sets=()
  for set in ${BENCH_SETS:-big many huge}; do
    if [ "$(avail_gib)" -lt "$(need "$set")" ]; then
      echo "skipping $set: needs about $(need "$set") GiB free in $WORK, $(avail_gib) GiB left" >&2
      continue
    fi
    echo "generating $set in $WORK ..." >&2
    "$WORK/benchdata" "$set" "$WORK/data/$set"
    sets+=("$set")
  done
  sync
  reps=${BENCH_REPS:-1}
  median() { sort -n | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'; }
  n=0
  one() { # step set budget(""|128) -> "pushKiB pushS pullKiB pullS"
    local step=$1 set=$2 budget=$3 repo=bench/rss-$((n++)) dst=$WORK/out/rss-$n st=$WORK/state/rss-$n
    local envs=() flags=()
    if [ -n "$budget" ]; then
      if [ "$step" = "$BASE_STEP" ]; then envs=(GOMEMLIMIT=96MiB); else flags=(--memory-budget 128Mi); fi
    fi
    mkdir -p "$dst" "$st"
    sync
    measure "$WORK/m.push" env "${envs[@]}" "$step" push --registry "$ADDR" --plain-http --repository "$repo" --tag t --task t \
      --mount "$WORK/data/$set" --state "$WORK/state/push-$n" "${flags[@]}" 2> "$WORK/rss-push.log" ||
      { cat "$WORK/rss-push.log" >&2; exit 1; }
    sync
    measure "$WORK/m.pull" env "${envs[@]}" "$step" pull --registry "$ADDR" --plain-http --repository "$repo" --from t \
      --mount "$dst" --state "$st" "${flags[@]}" 2> "$WORK/rss-pull.log" ||
      { cat "$WORK/rss-pull.log" >&2; exit 1; }
    diff -r "$WORK/data/$set" "$dst" > /dev/null || { echo "MISMATCH after pull ($set)" >&2; exit 1; }
    echo "$(cat "$WORK/m.push") $(cat "$WORK/m.pull")"
    # the pulled copy and the blobs go, so the next case has the disk
    rm -rf "$dst" "$st" "$WORK/state/push-$n" "$WORK/registry/docker/registry/v2/repositories/$repo"
    find "$WORK/registry/docker/registry/v2/blobs" -mindepth 1 -delete 2>/dev/null || true
  }
  printf '\n%-6s %-6s %-10s %12s %9s %12s %9s\n' set step budget "push MiB" "push s" "pull MiB" "pull s"
  for set in "${sets[@]}"; do
    for step in $BASE_STEP "$STEP"; do
      label=new
      [ "$step" = "$BASE_STEP" ] && label=base
      for budget in "" 128; do
        : > "$WORK/reps"
        for _ in $(seq "$reps"); do one "$step" "$set" "$budget" >> "$WORK/reps"; done
        pk=$(awk '{print $1}' "$WORK/reps" | median); ps=$(awk '{print $2}' "$WORK/reps" | median)
        lk=$(awk '{print $3}' "$WORK/reps" | median); ls=$(awk '{print $4}' "$WORK/reps" | median)
        printf '%-6s %-6s %-10s %12d %9s %12d %9s\n' "$set" "$label" "${budget:+${budget}Mi}" $((pk / 1024)) "$ps" $((lk / 1024)) "$ls"
      done
    done
  done
  echo "peak RSS in MiB (GNU time's maximum resident set size, or VmHWM); medians of $reps"
  echo "cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

echo "generating data in $WORK ..." >&2
"$WORK/benchdata" big "$WORK/data/big/data"
"$WORK/benchdata" small "$WORK/data/small/data"
sync

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
n=0
run_ours() { # name dataset compression -> "push pull"
  local name=$1 set=$2 comp=$3 repo=bench/ours-$1-$3-$((n++))
  local src=$WORK/data/$set/data dst=$WORK/out/$name-$comp state=$WORK/state/$name-$comp t1b
  rm -rf "$dst" "$state"; mkdir -p "$dst" "$state"
  local t0 t1 t2
  sync
  t0=$(now)
  "$STEP" push --registry "$ADDR" --plain-http --repository "$repo" --tag t --task t \
    --mount "$src" --state "$WORK/state/none-$n" --compression "$comp" 2> "$WORK/ours-push.log"
  t1=$(now)
  sync
  t1b=$(now)
  "$STEP" pull --registry "$ADDR" --plain-http --repository "$repo" --from t \
    --mount "$dst" --state "$state" 2> "$WORK/ours-pull.log"
  t2=$(now)
  diff -r "$src" "$dst" > /dev/null || { echo "MISMATCH after our pull ($name $comp)" >&2; exit 1; }
  # no-change push from the pulled workspace (after the pull's writes are
  # flushed): the median of 3, in ms
  sync
  local nc=()
  for i in 1 2 3; do
    local t3 t4
    t3=$(now)
    "$STEP" push --registry "$ADDR" --plain-http --repository "$repo" --tag "u$i" --task u \
      --mount "$dst" --state "$state" --compression "$comp" 2> "$WORK/ours-nochange.log"
    t4=$(now)
    nc+=("$(awk -v a="$t3" -v b="$t4" 'BEGIN { printf "%.0f", (b - a) * 1000 }')")
  done
  local med
  med=$(printf '%s\n' "${nc[@]}" | sort -n | sed -n 2p)
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1b" "$t2") $med"
}
run_oras() { # name dataset -> "push pull"
  local name=$1 set=$2 repo=bench/oras-$1
  local dst=$WORK/out/oras-$name t1b
  rm -rf "$dst"; mkdir -p "$dst"
  local t0 t1 t2
  sync
  t0=$(now)
  (cd "$WORK/data/$set" && "$ORAS" push --plain-http "$ADDR/$repo:t" ./data/ > "$WORK/oras-push.log" 2>&1)
  t1=$(now)
  sync
  t1b=$(now)
  "$ORAS" pull --plain-http -o "$dst" "$ADDR/$repo:t" > "$WORK/oras-pull.log" 2>&1
  t2=$(now)
  diff -r "$WORK/data/$set/data" "$dst/data" > /dev/null || { echo "MISMATCH after oras pull ($name)" >&2; exit 1; }
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1b" "$t2")"
}

printf '\n%-26s %9s %9s %9s %11s %16s\n' "case" "push s" "pull s" "total s" "vs oras" "no-change push*" | tee "$WORK/table"
row() { # label push pull oras_total [nochange]
  local total ratio
  total=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", a + b }')
  ratio=$(awk -v o="$4" -v t="$total" 'BEGIN { if (t > 0 && o > 0) printf "%.1fx", o / t; else printf "-" }')
  printf '%-26s %9s %9s %9s %11s %16s\n' "$1" "$2" "$3" "$total" "$ratio" "${5:-}"
}
for set in small big; do
  read -r op opl < <(run_oras "$set" "$set")
  ot=$(awk -v a="$op" -v b="$opl" 'BEGIN { printf "%.2f", a + b }')
  row "$set: oras CLI (gzip)" "$op" "$opl" "$ot"
  for comp in zstd gzip none; do
    if [ "$set" = small ] && [ "$comp" != zstd ]; then continue; fi
    read -r p pl nc < <(run_ours "$set" "$set" "$comp")
    row "$set: ours ($comp)" "$p" "$pl" "$ot" "${nc} ms"
  done
done

# empty workspace: pull with no ancestors + push of nothing (median of 3)
em=()
for i in 1 2 3; do
  rm -rf "$WORK/empty"; mkdir -p "$WORK/empty/ws"
  t0=$(now)
  "$STEP" pull --registry "$ADDR" --plain-http --repository bench/empty --from "" --mount "$WORK/empty/ws" --state "$WORK/empty/state" 2> /dev/null
  "$STEP" push --registry "$ADDR" --plain-http --repository bench/empty --tag "e$i" --task e --mount "$WORK/empty/ws" --state "$WORK/empty/state" 2> /dev/null
  t1=$(now)
  em+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')")
done
printf '\nempty workspace pull+push: %s ms (median of 3: %s)\n' "$(printf '%s\n' "${em[@]}" | sort -n | sed -n 2p)" "${em[*]}"
echo "* median of 3 pushes of an unchanged workspace right after its pull"
echo "cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
