#!/usr/bin/env bash
# Prints the path of the zot binary (v2.1.20, the registry the chart
# installs), found as ../shared/zot/README.md says: $ZOT_BIN, else
# shared/zot/zot beside the clone, else the copy an earlier run left in the
# tools cache, else `go install` from the module proxy (where it serves zot).
# A binary found beside the clone is copied into the cache by version, so a
# clone elsewhere on this machine finds it too. Exits 1, saying why, when
# there is none.
set -euo pipefail
cd "$(dirname "$0")/.."

ZOT_VERSION=v2.1.20
CACHE=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tekton-oci-transport/tools}
cached=$CACHE/zot-$ZOT_VERSION/zot

if [ -n "${ZOT_BIN:-}" ]; then
  [ -x "$ZOT_BIN" ] || { echo "zot: ZOT_BIN=$ZOT_BIN is not an executable" >&2; exit 1; }
  printf '%s\n' "$ZOT_BIN"
  exit 0
fi
beside=$(cd .. && pwd)/shared/zot/zot
if [ -x "$beside" ]; then
  if ! cmp -s "$beside" "$cached" 2>/dev/null; then
    mkdir -p "$(dirname "$cached")"
    cp "$beside" "$cached.tmp" && mv "$cached.tmp" "$cached"
  fi
  printf '%s\n' "$beside"
  exit 0
fi
if [ -x "$cached" ]; then
  printf '%s\n' "$cached"
  exit 0
fi
tmp=$(mktemp -d)
if GOBIN=$tmp go install "zotregistry.dev/zot/v2/cmd/zot@$ZOT_VERSION" >/dev/null 2>&1 && [ -x "$tmp/zot" ]; then
  mkdir -p "$(dirname "$cached")"
  mv "$tmp/zot" "$cached"
  rm -rf "$tmp"
  printf '%s\n' "$cached"
  exit 0
fi
rm -rf "$tmp"
echo "zot $ZOT_VERSION not found: set ZOT_BIN, or put the binary at $beside (see shared/zot/README.md); the module proxy does not serve zotregistry.dev/zot/v2" >&2
exit 1
