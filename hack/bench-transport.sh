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
set -euo pipefail
cd "$(dirname "$0")/.."

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
