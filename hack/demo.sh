#!/usr/bin/env bash
# make demo: the main job, for real. Brings up the single-node test bed
# (test/cluster: Kubernetes, Tekton, our chart with its zot; the first run
# builds everything, later runs reuse the cache), creates the example's
# Pipeline and Tasks, shows what `webhook report` says of its run before it
# exists, creates the labelled release run (deploy/examples/release-cluster),
# shows what the webhook changed,
# follows the run to Succeeded with the injected steps' log lines, lists the
# artifacts in the registry, shows that no PVC was created, and tears it all
# down. KEEP=1 keeps the test bed up; OFFLINE=1 only converts the run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/cluster/lib.sh
ex=deploy/examples/release-cluster
out=$(mktemp -d)
T0=$SECONDS
say() { printf '\n\033[1m== [%ss] %s\033[0m\n' "$((SECONDS - T0))" "$*"; }

say "1. The run a platform team labels ($ex/run.yaml): one 50Gi volumeClaimTemplate"
sed -n '/^apiVersion/,$p' $ex/run.yaml
say "Offline preview (bin/webhook convert): what the webhook will do to it"
bin/webhook convert -f $ex/run.yaml -f $ex/pipeline.yaml -f $ex/tasks.yaml > "$out/offline.yaml" 2> "$out/report.txt" || {
  cat "$out/report.txt"; exit 1; }
cat "$out/report.txt"
if [ "${OFFLINE:-0}" = 1 ]; then rm -rf "$out"; exit 0; fi

say "2. The test bed: single-node Kubernetes + Tekton + our chart with its zot (test/cluster/up.sh)"
cleanup() {
  rc=$?
  rm -rf "$out"
  if [ "${KEEP:-0}" = 1 ]; then
    say "KEEP=1: the test bed stays up. export KUBECONFIG=$KUBECONFIG_FILE; kubectl is $D/bin/kubectl; make cluster-down when done"
  else
    say "Tearing down (test/cluster/down.sh)"
    test/cluster/down.sh
  fi
  exit $rc
}
cluster_lock
trap cleanup EXIT
test/cluster/up.sh
KUBECTL=$D/bin/kubectl
export KUBECONFIG=$KUBECONFIG_FILE
say "Up in $((SECONDS - T0))s. Installed:"
kc get deploy -A -o custom-columns=NAMESPACE:.metadata.namespace,DEPLOYMENT:.metadata.name,READY:.status.readyReplicas,IMAGE:.spec.template.spec.containers[0].image
kc get storageclass
kc get mutatingwebhookconfiguration tekton-oci-transport -o jsonpath='{range .webhooks[*]}{.name}: failurePolicy={.failurePolicy}, service={.clientConfig.service.namespace}/{.clientConfig.service.name}{"\n"}{end}'

say "3. Create the Pipeline and its Tasks (by name) in namespace release"
kc create namespace release >/dev/null
kc -n release apply -f $ex/prerequisites.yaml -f $ex/tasks.yaml -f $ex/pipeline.yaml

say "4. Before the run: bin/webhook report, what the webhook would do with it and the storage it saves"
# The report reads runs that exist: the labelled run is not created yet, so
# it reads run.yaml beside the namespace, Pipeline and Tasks as stored.
{ kc get namespace release -o yaml; echo ---; kc -n release get pipelines,tasks -o yaml; } > "$out/cluster.yaml"
bin/webhook report -n release -f "$out/cluster.yaml" -f $ex/run.yaml | tee "$out/report.txt"
grep -q ': would-convert' "$out/report.txt" || { echo "demo FAILED: the report does not say would-convert"; exit 1; }

say "5. Create the labelled run in namespace release"
run=$(kc -n release create -f $ex/run.yaml -o name)
echo "created $run"

say "6. What the webhook changed (the stored run vs the submitted one)"
kc -n release get "$run" -o yaml > "$out/stored.yaml"
echo "annotations:"
awk '/^  annotations:/{p=1;next} p&&/^  [a-z]/{p=0} p' "$out/stored.yaml" | cut -c1-200
echo "workspaces (was: volumeClaimTemplate 50Gi):"
awk '/^  workspaces:/{p=1} p&&/^status:/{p=0} p' "$out/stored.yaml" | head -12
echo "steps of each task (injected ones start with oci-transport-):"
kc -n release get "$run" -o jsonpath='{range .spec.pipelineSpec.tasks[*]}{.name}: {range .taskSpec.steps[*]}{.name} {end}{"\n"}{end}'
echo "publish-images' pull step:"
kc -n release get "$run" -o jsonpath='{range .spec.pipelineSpec.tasks[?(@.name=="publish-images")].taskSpec.steps[0]}{.image} {.command} {.args}{"\n"}{end}' | fold -w 160

say "7. Following the run"
s=$SECONDS
for i in $(seq 300); do
  st=$(kc -n release get "$run" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')
  [ "$st" = True ] || [ "$st" = False ] && break
  sleep 2
done
kc -n release get "$run" -o jsonpath='{.metadata.name}: {.status.conditions[0].reason} ({.status.conditions[0].message}){"\n"}'
echo "run took $((SECONDS - s))s after creation"
kc -n release get taskruns -o custom-columns=TASK:.metadata.labels.tekton\\.dev/pipelineTask,STATUS:.status.conditions[0].reason,START:.status.startTime,END:.status.completionTime
say "Injected steps' logs (files, bytes, seconds)"
for tr in $(kc -n release get taskruns -o jsonpath='{range .items[*]}{.metadata.name}{" "}{end}'); do
  pod=$(kc -n release get taskrun "$tr" -o jsonpath='{.status.podName}')
  task=$(kc -n release get taskrun "$tr" -o jsonpath='{.metadata.labels.tekton\.dev/pipelineTask}')
  for c in $(kc -n release get pod "$pod" -o jsonpath='{.spec.containers[*].name}' 2>/dev/null); do
    case $c in step-oci-transport-*)
      kc -n release logs "$pod" -c "$c" 2>/dev/null | sed "s/^/  $task ${c#step-oci-transport-}: /" | cut -c1-220 ;;
    esac
  done
done

say "8. Artifacts in the registry (the chart's zot at $REGISTRY_ADDRESS)"
uid=$(kc -n release get "$run" -o jsonpath='{.metadata.uid}')
repo=tekton-oci-transport/release/$uid/workarea
# read as namespace release's runs may: zot asks for a registry token, the
# chart's token service gives one for a ServiceAccount token of release
# (pull on release's repositories only: no catalog); test/equivalence/registry.go
echo "tags of $repo: $(KUBECTL=$KUBECTL REGISTRY_NS=$REGISTRY_NS REGISTRY_SERVICE=$REGISTRY_SERVICE REGISTRY_PORT=$REGISTRY_PORT \
  go run ./test/equivalence -tags "$repo")"

say "9. Tenant isolation: a pod in another namespace runs the same pull and push against this run's artifacts"
# The run's own injected steps (image, command, arguments as the webhook
# wrote them), in a pod of namespace release-intruder with that namespace's
# ServiceAccount token: the token service grants it nothing on release's
# repositories, so both must be refused; the same pull in namespace release
# is the control (test/equivalence/intruder.go, fault case cross-namespace).
KUBECTL=$KUBECTL REGISTRY_NS=$REGISTRY_NS REGISTRY_SERVICE=$REGISTRY_SERVICE REGISTRY_PORT=$REGISTRY_PORT \
  go run ./test/equivalence -probe-other-namespace "release/${run#*/}" | cut -c1-300 ||
  { echo "demo FAILED: another namespace was not refused"; exit 1; }

say "10. PVCs in namespace release (a PVC run would have one per run)"
n=$(kc -n release get pvc --no-headers 2>/dev/null | wc -l)
kc -n release get pvc 2>&1 | head -5
echo "PVCs: $n"
st=$(kc -n release get "$run" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')
if [ "$st" != True ] || [ "$n" != 0 ]; then
  echo "demo FAILED: run status $st, $n PVC(s)"
  exit 1
fi
say "Demo done: the labelled run Succeeded on emptyDirs, its files moved through the registry, no PVC (total $((SECONDS - T0))s)"
