#!/usr/bin/env bash
# make demo: shows the main job. Until the single-node cluster demo lands,
# this converts the shipped release-style run offline, exactly as the
# webhook would admit it, and shows what changed and why.
set -euo pipefail
cd "$(dirname "$0")/.."
ex=deploy/examples/release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "The run a platform team labels (deploy/examples/release/run.yaml): one 50Gi volumeClaimTemplate"
sed -n '/^apiVersion/,$p' $ex/run.yaml

say "Converting it (bin/webhook convert), as the admission webhook would"
bin/webhook convert -f $ex/run.yaml -f $ex/release-pipeline.yaml -f $ex/tasks.yaml \
  -f $ex/publish.yaml -f $ex/precheck.yaml > "$out/converted.yaml" 2> "$out/report.txt" || {
  cat "$out/report.txt"; exit 1; }
cat "$out/report.txt"

say "The workspace is now an emptyDir: no PVC per run"
awk '/^  workspaces:/{p=1} p' "$out/converted.yaml"

say "What was recorded on the run (kubectl get pipelinerun -o yaml shows the same)"
awk '/^  annotations:/{p=1;print;next} p&&/^  [a-z]/{p=0} p' "$out/converted.yaml" | cut -c1-160

say "publish-images: pulls what its ancestors left in git/, pushes what it wrote (git/ and bucket/)"
awk '/^    - name: publish-images$/{p=1} p&&/^    - name: publish-to-bucket$/{exit} p' "$out/converted.yaml" \
  | grep -E '^\s+(- name: oci-transport-|name: (oci-transport-|publish$)|- (pull|push)$|- --(from|mount|tag|repository)$)' -A1 \
  | grep -vE '^--$' | sed -n '1,60p'

say "Full converted run: $(wc -l < "$out/converted.yaml") lines (rerun: bin/webhook convert -f ... )"
