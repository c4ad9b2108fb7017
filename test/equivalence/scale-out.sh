#!/usr/bin/env bash
# test/equivalence/scale-out.sh: zot on S3 with two members (its scale-out
# cluster; docs/registry-scale-out.md) on the test bed, issue 12:
#   1. versitygw (an S3 gateway over a folder) in namespace eq-s3: its image
#      assembled from the static binary of `hack/tools.sh versitygw`
#      (local.test/versitygw:<version>, cached in $IMAGE_CACHE), a posix
#      backend on an emptyDir with the bucket folder made by an init
#      container; the Secret zot-s3-credentials in the chart's namespace;
#   2. the chart upgraded to zot.replicas 2 on that bucket, both members ready;
#   3. cases of the corpus again (SO_CASES_DEFAULT below says which and why;
#      SCALE_OUT_CASES=all: every one), $EQ_PARALLEL at a time, each named
#      <case>-s3 (its own namespace eq-<case>-s3);
#   4. the fault registry-member-restart: the member owning the run's
#      repository deleted while a task pushes; the run must succeed and be
#      equivalent (faults/registry-member-restart.yaml);
#   5. the chart put back (up.sh's values), eq-s3 and the Secret deleted.
# Prints each phase's seconds.
#
# Sourced by run.sh (then it uses run.sh's cases, summary and failed, and
# FAULTS decides the fault as for the others), or run on its own against a
# test bed that is up (make cluster-up, or KEEP=1 run.sh): it takes the test
# bed's lock, builds the harness, and prints its own summary; exit 1 if
# anything failed. CASES="a b" runs only these cases; SCALE_OUT_FAULT=0 skips
# the fault, SCALE_OUT_CORPUS=0 the corpus.

so_standalone=0
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  so_standalone=1
  set -euo pipefail
  cd "$(dirname "$0")/../.."
  source test/cluster/lib.sh
  # the test bed's lock (held already when run.sh runs this script: its fd 9)
  if [ "$(readlink /proc/$$/fd/9 2>/dev/null)" != "$CACHE_BASE/cluster.lock" ]; then cluster_lock; fi
  if ! { [ -f "$D/apiserver.pid" ] && kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null; }; then
    echo "scale-out: no test bed is up under $D (make cluster-up, or KEEP=1 test/equivalence/run.sh)" >&2
    exit 2
  fi
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
  par=${EQ_PARALLEL:-2}
  [[ $par =~ ^[1-9][0-9]*$ ]] || { echo "EQ_PARALLEL must be a positive number, not '$par'" >&2; exit 2; }
fi
HELM=${HELM:-$(hack/tools.sh helm)/helm}

SO_NS=eq-s3
SO_BUCKET=tekton-oci-transport
SO_SECRET=zot-s3-credentials
SO_ACCESS=eq-s3-access
SO_SECRET_KEY=eq-s3-secret-0123456789
SO_VALUES=(--set zot.replicas=2 --set zot.storage.type=s3
  --set zot.storage.s3.bucket=$SO_BUCKET --set zot.storage.s3.region=us-east-1
  --set zot.storage.s3.regionEndpoint=http://versitygw.$SO_NS.svc:7070
  --set zot.storage.s3.secure=false --set zot.storage.s3.credentialsSecret=$SO_SECRET)
so_phases=()
so_phase() { so_phases+=("$1 $(($SECONDS - so_s))s"); echo "  (scale-out: $1 in $(($SECONDS - so_s))s)"; so_s=$SECONDS; }
so_line() { summary+=("$(printf '%-18s %4s  %s' "$1" "$2" "$3")"); }

# 1. versitygw in eq-s3, the bucket, the credentials
so_versitygw() {
  local gw ver tar r
  gw=$(hack/tools.sh versitygw)/versitygw || return 1
  ver=$(sed -n 's/^VERSITYGW_VERSION=//p' hack/tools.sh)
  tar=$IMAGE_CACHE/versitygw-$ver-$(sha256sum "$gw" | cut -c1-12).tar
  if [ ! -f "$tar" ]; then
    r=$(mktemp -d)
    mkdir -p "$r/usr/bin" "$r/tmp" "$r/data"; chmod 1777 "$r/tmp"
    cp "$gw" "$r/usr/bin/versitygw"
    "$D/bin/imgtool" -o "$tar" -root "$r" -tag "local.test/versitygw:$ver" -- /usr/bin/versitygw || { rm -rf "$r"; return 1; }
    rm -rf "$r"
  fi
  $CTR images import "$tar" >/dev/null || return 1
  kc apply -f - >/dev/null <<EOF || return 1
apiVersion: v1
kind: Namespace
metadata: {name: $SO_NS}
---
apiVersion: v1
kind: Secret
metadata: {name: versitygw, namespace: $SO_NS}
stringData: {ROOT_ACCESS_KEY_ID: $SO_ACCESS, ROOT_SECRET_ACCESS_KEY: $SO_SECRET_KEY}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: versitygw, namespace: $SO_NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: versitygw}}
  template:
    metadata: {labels: {app: versitygw}}
    spec:
      # the bucket: versitygw's posix backend serves each top-level folder as one
      initContainers:
      - name: bucket
        image: docker.io/library/busybox:1.37
        imagePullPolicy: Never
        command: [mkdir, -p, /data/$SO_BUCKET]
        volumeMounts: [{name: data, mountPath: /data}]
      containers:
      - name: versitygw
        image: local.test/versitygw:$ver
        imagePullPolicy: Never
        args: [--port, ":7070", --quiet, posix, /data]
        envFrom: [{secretRef: {name: versitygw}}]
        ports: [{name: s3, containerPort: 7070}]
        readinessProbe: {tcpSocket: {port: 7070}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: versitygw, namespace: $SO_NS}
spec:
  selector: {app: versitygw}
  ports: [{name: s3, port: 7070, targetPort: 7070}]
EOF
  kc -n $CHART_NS create secret generic $SO_SECRET --from-literal=AWS_ACCESS_KEY_ID=$SO_ACCESS \
    --from-literal=AWS_SECRET_ACCESS_KEY=$SO_SECRET_KEY --dry-run=client -o yaml | kc apply -f - >/dev/null || return 1
  if ! kc -n $SO_NS rollout status deployment/versitygw --timeout=120s >/dev/null; then
    kc -n $SO_NS get pods -o wide; kc -n $SO_NS logs deploy/versitygw --tail=20 || true
    return 1
  fi
  # the bucket answers from the host through the Service (an anonymous
  # HEAD: 403, not 404; kube-proxy may take a moment with a new Service)
  local ip code i
  ip=$(kc -n $SO_NS get service versitygw -o jsonpath='{.spec.clusterIP}')
  for i in $(seq 30); do
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' -I "http://$ip:7070/$SO_BUCKET" || true)
    [ "$code" = 000 ] || break
    sleep 1
  done
  echo "  versitygw $ver up at $ip:7070 (versitygw.$SO_NS.svc); HEAD /$SO_BUCKET answered $code"
  if [ "$code" = 404 ] || [ "$code" = 000 ]; then
    kc -n $SO_NS get pods,endpointslices -o wide; kc -n $SO_NS logs deploy/versitygw --tail=20 || true
    return 1
  fi
}

# 2. zot: two members on the bucket
so_zot() {
  if ! chart upgrade "${SO_VALUES[@]}" > "$D/logs/chart-upgrade-s3.log" 2>&1; then
    cat "$D/logs/chart-upgrade-s3.log"
    kc -n $REGISTRY_NS get pods -l "$REGISTRY_SELECTOR" -o wide || true
    kc -n $REGISTRY_NS logs $REGISTRY_SERVICE-0 --tail=20 || true
    kc -n $REGISTRY_NS logs $REGISTRY_SERVICE-1 --tail=20 || true
    return 1
  fi
  kc -n $REGISTRY_NS rollout status statefulset/$REGISTRY_SERVICE --timeout=120s >/dev/null || return 1
  echo "  zot members:"
  kc -n $REGISTRY_NS get pods -l "$REGISTRY_SELECTOR" -o wide | sed 's/^/    /'
  [ "$(kc -n $REGISTRY_NS get statefulset $REGISTRY_SERVICE -o jsonpath='{.status.readyReplicas}')" = 2 ]
}

# 3. the corpus under s3, $par at a time (run.sh's loop, names suffixed)
# A case whose files name its own namespace (release-bundles: the cluster
# resolver's namespace param is eq-release-bundles) keeps its name: the
# corpus before this one has ended and deleted that namespace.
so_run_case() {
  local c=$1 p=test/equivalence/testdata/$1 s=$SECONDS rc=0 args=(-name "$1-s3") files
  if [ -d "$p" ]; then files=("$p"/*.yaml); else files=("$p.yaml"); fi
  if grep -qs "eq-$c\b" "${files[@]}"; then args=(-name "$c"); fi
  for f in "${files[@]}"; do args+=(-f "$f"); done
  "$D/bin/equivalence" "${args[@]}" > "$D/logs/eq-$c-s3.log" 2>&1 || rc=$?
  echo "$rc $((SECONDS - s))" > "$D/logs/eq-$c-s3.done"
}
so_corpus() {
  local c rc secs
  declare -A so_shown=()
  for c in "${so_cases[@]}"; do rm -f "$D/logs/eq-$c-s3.done"; done
  for c in "${so_cases[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do wait -n || true; so_show; done
    so_run_case "$c" &
  done
  wait
  so_show
  for c in "${so_cases[@]}"; do
    read -r rc secs < "$D/logs/eq-$c-s3.done"
    [ "$rc" = 0 ] || failed+=("$c-s3")
    so_line "$c-s3" "${secs}s" "$(grep -E '^(PASS|FAIL|ERROR)' "$D/logs/eq-$c-s3.log" | head -1 || true)"
  done
}
so_show() {
  local c
  for c in "${so_cases[@]}"; do
    if [ -z "${so_shown[$c]:-}" ] && [ -f "$D/logs/eq-$c-s3.done" ]; then
      so_shown[$c]=1
      cat "$D/logs/eq-$c-s3.log"
    fi
  done
}

# 4. the member owning the run's repository deleted while `during` pushes
so_fault() {
  local n=registry-member-restart s=$SECONDS log=$D/logs/eq-fault-registry-member-restart.log ok=1 res fault retries
  "$D/bin/equivalence" -name fault-$n-s3 -fault $n:during -v -f test/equivalence/faults/$n.yaml > "$log" 2>&1 || ok=0
  cat "$log"
  res=$(grep -E '^(PASS|FAIL|ERROR)' "$log" | head -1 || true)
  fault=$(grep -m1 '^  fault: ' "$log" | sed 's/^  fault: //' || true)
  retries=$(grep -c 'msg=retrying' "$log" || true)
  if [ -z "$fault" ]; then
    ok=0; res="ERROR: no fault was injected (the harness does not know -fault $n: main.go's wiring?); $res"
  elif [[ $fault == "no member deleted"* ]] || [[ $fault != *" ready "* ]]; then
    ok=0; res="ERROR: $fault; $res"
  fi
  [ $ok = 1 ] || failed+=(fault-$n-s3)
  so_line "fault-$n-s3" "$((SECONDS - s))s" "$res ($retries step retries logged)"
  echo "  fault: ${fault:-none}"
  # how long each member took: created, zot started, Ready (the new pod
  # rebuilds its metadata from the bucket before it is ready)
  kc -n $REGISTRY_NS get pods -l "$REGISTRY_SELECTOR" -o custom-columns='POD:.metadata.name,CREATED:.metadata.creationTimestamp,STARTED:.status.containerStatuses[0].state.running.startedAt,READY:.status.conditions[?(@.type=="Ready")].lastTransitionTime,RESTARTS:.status.containerStatuses[0].restartCount' | sed 's/^/    /'
  # a new member that exited before it was ready says why
  local victim
  victim=$(sed -n 's/^zot member \([^ ]*\) deleted.*/\1/p' <<< "$fault")
  if [ -n "$victim" ] && [ "$(kc -n $REGISTRY_NS get pod "$victim" -o jsonpath='{.status.containerStatuses[0].restartCount}')" != 0 ]; then
    echo "  $victim's previous container (it exited before it was ready):"
    kc -n $REGISTRY_NS logs "$victim" --previous 2>&1 | grep -m3 -iE '^panic|"level":"(error|fatal|panic)"' | cut -c1-500 | sed 's/^/    /'
  fi
}

# 5. back to up.sh's values; versitygw and the credentials gone
so_restore() {
  local rc=0
  if ! chart upgrade > "$D/logs/chart-upgrade.log" 2>&1; then cat "$D/logs/chart-upgrade.log"; rc=1; fi
  kc -n $CHART_NS delete secret $SO_SECRET --ignore-not-found >/dev/null || rc=1
  kc delete namespace $SO_NS --ignore-not-found --timeout=120s >/dev/null || rc=1
  return $rc
}

# The cases run again on S3. The storage backend sees only blobs, manifests
# and tags, so by default the cases whose registry traffic differs in shape
# run (SO_CASES_DEFAULT): one producer and its consumers (linear), several
# producers pulled in order (fan-in), concurrent pushes to one repository and
# tags that may be missing (matrix, matrix-deletions, when-skipped,
# finally), deletions (deletions), hard links (hardlinks), a 200 MB layer in
# S3 multipart parts (big-file), subPath views (subpaths,
# readonly-and-writable) and the bundles resolver pulling from zot
# (release-bundles). The corpus's other cases vary the tree, which the
# steps and the webhook decide, the same on either backend; they all ran on
# the chart's default zot just before (the whole corpus on S3 passed in
# session 4: 30/30). SCALE_OUT_CASES=all runs every case again,
# SCALE_OUT_CASES="a b" these; CASES given to run.sh are taken as they are.
SO_CASES_DEFAULT="linear fan-in matrix matrix-deletions when-skipped finally deletions hardlinks big-file subpaths readonly-and-writable release-bundles"
so_cases=()
if [ "${SCALE_OUT_CASES:-}" = all ] || { [ -z "${SCALE_OUT_CASES:-}" ] && [ -n "${CASES:-}" ]; }; then
  so_cases=("${cases[@]}")
else
  for c in ${SCALE_OUT_CASES:-$SO_CASES_DEFAULT}; do
    if [ -e "test/equivalence/testdata/$c" ] || [ -e "test/equivalence/testdata/$c.yaml" ]; then so_cases+=("$c")
    else echo "scale-out: no case $c in test/equivalence/testdata" >&2; failed+=("$c-s3"); fi
  done
fi

so_t0=$SECONDS
so_s=$SECONDS
echo
echo "== scale-out: zot on S3 (versitygw in $SO_NS), two members; the corpus and a member deleted mid-run"
so_ok=1
if so_versitygw; then so_phase versitygw; else so_phase versitygw; so_ok=0; failed+=(s3-versitygw); so_line s3-versitygw - "ERROR: versitygw did not come up in $SO_NS"; fi
if [ $so_ok = 1 ]; then
  if so_zot; then so_phase "zot-2-members"; else so_phase "zot-2-members"; so_ok=0; failed+=(s3-zot); so_line s3-zot - "ERROR: zot with 2 members on s3 did not come up (chart upgrade)"; fi
fi
if [ $so_ok = 1 ]; then
  if [ "${SCALE_OUT_CORPUS:-1}" != 0 ] && [ ${#so_cases[@]} -gt 0 ]; then so_corpus; so_phase "corpus(${#so_cases[@]} cases, $par at a time)"; fi
  if [ "${SCALE_OUT_FAULT:-1}" != 0 ] && { ! declare -F want >/dev/null || want registry-member-restart; }; then so_fault; so_phase fault; fi
fi
if so_restore; then so_phase restore; else so_phase restore; failed+=(s3-restore); so_line s3-restore - "ERROR: the chart was not put back to up.sh's values, or eq-s3 not deleted"; fi
echo "== scale-out phases: ${so_phases[*]}; total $((SECONDS - so_t0))s"
summary+=("$(printf '%-18s %4ds  %s' scale-out $((SECONDS - so_t0)) "phases: ${so_phases[*]}")")

if [ $so_standalone = 1 ]; then
  echo
  echo "== scale-out summary"
  printf '%s\n' "${summary[@]}"
  if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
  echo "all passed"
fi
