#!/usr/bin/env bash
# test/install/run.sh: the README's install path on the running test bed
# (test/cluster), from `make images` to a Succeeded labelled run, with the
# images pulled from a registry as a user's cluster pulls them.
#
#  1. a CNCF Distribution registry (hack/tools.sh registry) on this node's
#     address, plain HTTP, storage in a temporary folder; containerd is told
#     it is plain HTTP ($D/certs.d/<ip:port>/hosts.toml, up.sh points
#     containerd's config_path there)
#  2. make push-images IMAGE_REPO=<ip:port>/tekton-oci-transport PLAIN_HTTP=1
#     (which runs make images first): both images as OCI archives, pushed,
#     the helm line printed
#  3. the test bed's chart upgraded with exactly the printed --set flags (and
#     the webhook's pullPolicy, which the test bed sets to Never): the
#     webhook's pod must run the pushed image, pulled by digest
#  4. a labelled two-task run with a volumeClaimTemplate in a fresh
#     namespace: converted, its injected steps the pushed step image by
#     digest (run by the kubelet at that digest), no PVC, Succeeded
#  5. the chart put back as up.sh installed it, the registry stopped and
#     removed, its hosts.toml and pulled images removed
#
# Needs the test bed up (make cluster-up, or test/equivalence/run.sh, which
# calls this while its bed is up). INSTALL_REGISTRY_PORT (default 5001).
set -euo pipefail
cd "$(dirname "$0")/../.."
source test/cluster/lib.sh
t0=$SECONDS
ts() { printf '[install %3ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
fail() { echo "install: FAIL: $*" >&2; exit 1; }

[ -f "$D/apiserver.pid" ] && kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null || fail "no test bed running under $D (make cluster-up)"
[ -d "$D/certs.d" ] || fail "containerd of this test bed has no registry config_path ($D/certs.d): brought up by an older up.sh"
KUBECTL=${KUBECTL:-$D/bin/kubectl}
HELM=$(hack/tools.sh helm)/helm
REGISTRY=$(hack/tools.sh registry)/registry
IP=$(cat "$D/node-ip")
ADDR=$IP:${INSTALL_REGISTRY_PORT:-5001}
IMAGE_REPO=$ADDR/tekton-oci-transport
NS=install-test
W=$(mktemp -d)
REG_PID=
upgraded=0

cleanup() {
  local rc=$? c
  set +e
  kc delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1
  if [ $upgraded = 1 ]; then
    if chart upgrade > "$W/chart-restore.log" 2>&1; then
      ts "chart put back (up.sh's values)"
    else
      cat "$W/chart-restore.log" >&2
      echo "install: FAIL: the chart could not be put back" >&2
      rc=1
    fi
  fi
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null; fi
  rm -rf "${D:?}/certs.d/$ADDR"
  for c in $($CTR images ls -q 2>/dev/null | grep -F "$ADDR/"); do $CTR images rm "$c" >/dev/null 2>&1; done
  rm -rf "$W"
  ts "registry stopped and removed; $([ $rc = 0 ] && echo PASS || echo FAILED)"
  exit $rc
}
trap cleanup EXIT

# ---- 1. the registry
if (exec 3<>"/dev/tcp/$IP/${ADDR##*:}") 2>/dev/null; then fail "$ADDR is taken (INSTALL_REGISTRY_PORT)"; fi
mkdir -p "$W/storage"
cat > "$W/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/storage
  delete:
    enabled: true
http:
  addr: $ADDR
EOF
"$REGISTRY" serve "$W/registry.yml" > "$W/registry.log" 2>&1 9>&- &
REG_PID=$!
for _ in $(seq 100); do curl -fs "http://$ADDR/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://$ADDR/v2/" >/dev/null || { cat "$W/registry.log" >&2; fail "the registry did not answer on $ADDR"; }
mkdir -p "$D/certs.d/$ADDR"
cat > "$D/certs.d/$ADDR/hosts.toml" <<EOF
# test/install/run.sh: its registry speaks plain HTTP
server = "http://$ADDR"

[host."http://$ADDR"]
  capabilities = ["pull", "resolve"]
EOF
ts "registry at http://$ADDR (containerd: $D/certs.d/$ADDR/hosts.toml)"

# ---- 2. make images, make push-images
SET_FILE=$W/sets make --no-print-directory push-images IMAGES_DIR="$W/images" IMAGE_REPO="$IMAGE_REPO" PLAIN_HTTP=1 | tee "$W/push.log"
mapfile -t sets < "$W/sets"
[ ${#sets[@]} = 4 ] || fail "push-images wrote ${#sets[@]} --set flags, not 4"
grep -q '^helm install tekton-oci-transport charts/tekton-oci-transport' "$W/push.log" || fail "push-images printed no helm install line"
WEBHOOK_DIGEST=$(sed -n 's/^--set webhook.image.digest=//p' "$W/sets")
STEP_DIGEST=$(sed -n 's/^--set steps.image.digest=//p' "$W/sets")
WEBHOOK_REF=$IMAGE_REPO/webhook@$WEBHOOK_DIGEST
STEP_REF=$IMAGE_REPO/oci-transport-step@$STEP_DIGEST
for d in "$WEBHOOK_DIGEST" "$STEP_DIGEST"; do [[ $d =~ ^sha256:[0-9a-f]{64}$ ]] || fail "not a digest: '$d'"; done
ts "pushed $WEBHOOK_REF and $STEP_REF"

# ---- 3. the chart from the pushed images (the printed --set flags, word by word)
flags=()
for s in "${sets[@]}"; do read -ra f <<< "$s"; flags+=("${f[@]}"); done
upgraded=1
chart upgrade "${flags[@]}" --set webhook.image.pullPolicy=IfNotPresent > "$W/chart.log" 2>&1 || { cat "$W/chart.log" >&2; fail "helm upgrade with the pushed images"; }
kc -n "$CHART_NS" rollout status deploy/tekton-oci-transport --timeout=180s >/dev/null
sel=app.kubernetes.io/instance=tekton-oci-transport,app.kubernetes.io/component=webhook
# the old pods gone: every webhook pod runs the pushed image, at its digest
for i in $(seq 90); do
  pods=$(kc -n "$CHART_NS" get pods -l "$sel" -o jsonpath='{range .items[*]}{.spec.containers[0].image} {.status.containerStatuses[0].imageID} {.status.containerStatuses[0].ready}{"\n"}{end}')
  [ -n "$pods" ] && ! grep -qv "^$WEBHOOK_REF [^ ]*@$WEBHOOK_DIGEST true\$" <<< "$pods" && break
  [ "$i" = 90 ] && { echo "$pods" >&2; fail "the webhook pods do not run $WEBHOOK_REF"; }
  sleep 1
done
$CTR images ls -q | grep -qF "$IMAGE_REPO/webhook@$WEBHOOK_DIGEST" || fail "containerd did not pull $WEBHOOK_REF"
ts "webhook runs $WEBHOOK_REF (pulled from $ADDR)"

# ---- 4. a labelled run
kc delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
kc create namespace "$NS" >/dev/null
kc label namespace "$NS" oci-transport.tekton.dev/enabled=true >/dev/null
cat > "$W/run.yaml" <<EOF
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata:
  generateName: install-
  namespace: $NS
spec:
  workspaces:
  - name: source
    volumeClaimTemplate:
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  pipelineSpec:
    workspaces: [{name: source}]
    tasks:
    - name: write
      workspaces: [{name: out, workspace: source}]
      taskSpec:
        workspaces: [{name: out}]
        steps:
        - name: write
          image: local.test/busybox:1
          script: |
            mkdir -p \$(workspaces.out.path)/dir
            echo hello > \$(workspaces.out.path)/dir/greeting
    - name: read
      runAfter: [write]
      workspaces: [{name: in, workspace: source}]
      taskSpec:
        workspaces: [{name: in}]
        steps:
        - name: read
          image: local.test/busybox:1
          script: |
            test "\$(cat \$(workspaces.in.path)/dir/greeting)" = hello
EOF
# The new webhook answers (a server dry run of the same run is converted
# with the pushed step image) before the run is created: with the chart's
# failurePolicy Ignore a run admitted while it restarts would keep its PVC.
for i in $(seq 60); do
  img=$(kc create --dry-run=server -f "$W/run.yaml" -o jsonpath='{.spec.pipelineSpec.tasks[*].taskSpec.steps[*].image}' 2>/dev/null || true)
  [[ " $img " == *" $STEP_REF "* ]] && break
  [ "$i" = 60 ] && fail "a dry run is not converted with $STEP_REF (step images: '$img')"
  sleep 1
done
run=$(kc create -f "$W/run.yaml" -o jsonpath='{.metadata.name}')
ts "created $NS/$run"
conv=$(kc -n "$NS" get pipelinerun "$run" -o jsonpath='{.metadata.annotations.oci-transport\.tekton\.dev/converted-workspaces}')
[ -n "$conv" ] || fail "$run was not converted (no oci-transport.tekton.dev/converted-workspaces annotation)"
images=$(kc -n "$NS" get pipelinerun "$run" -o jsonpath='{range .spec.pipelineSpec.tasks[*].taskSpec.steps[*]}{.name} {.image}{"\n"}{end}')
injected=$(grep -c '^oci-transport-' <<< "$images" || true)
# write pushes, read pulls (nothing after it to push for)
[ "$injected" = 2 ] || { echo "$images" >&2; fail "expected 2 injected steps (write's push, read's pull), found $injected"; }
if grep '^oci-transport-' <<< "$images" | grep -qv " $STEP_REF\$"; then echo "$images" >&2; fail "an injected step's image is not $STEP_REF"; fi
ts "converted (workspaces: $conv), $injected injected steps with image $STEP_REF"
status=
for _ in $(seq 300); do
  status=$(kc -n "$NS" get pipelinerun "$run" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')
  [ "$status" = True ] || [ "$status" = False ] && break
  sleep 1
done
if [ "$status" != True ]; then
  kc -n "$NS" get pipelinerun "$run" -o jsonpath='{.status.conditions}' >&2; echo >&2
  kc -n "$NS" get taskruns,pods -o wide >&2 || true
  for p in $(kc -n "$NS" get pods -o name); do kc -n "$NS" logs "$p" --all-containers --tail=20 >&2 || true; done
  fail "$run did not succeed (Succeeded=$status)"
fi
# the kubelet ran the injected steps at the pushed digest, pulled from $ADDR
ran=$(kc -n "$NS" get pods -o jsonpath='{range .items[*].status.containerStatuses[*]}{.name} {.image} {.imageID}{"\n"}{end}' | grep '^step-oci-transport-' || true)
[ -n "$ran" ] || fail "no injected step containers in the run's pods"
if grep -qv "@$STEP_DIGEST\$" <<< "$ran"; then echo "$ran" >&2; fail "an injected step did not run $STEP_REF"; fi
$CTR images ls -q | grep -qF "$IMAGE_REPO/oci-transport-step@$STEP_DIGEST" || fail "containerd did not pull $STEP_REF"
pvcs=$(kc -n "$NS" get pvc -o name | wc -l)
[ "$pvcs" = 0 ] || fail "$pvcs PVCs in $NS: the run was not converted"
ts "$run Succeeded: $(wc -l <<< "$ran") injected step containers ran $STEP_REF, no PVC"
