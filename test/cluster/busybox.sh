#!/usr/bin/env bash
# Prints "<path> <version>" of a STATIC busybox for the test bed's images
# (an image has no libraries: a dynamically linked busybox there makes every
# Tekton pod fail in place-scripts with "exec /bin/sh: no such file").
#
# Debian's busybox-static when it is installed; otherwise its package file,
# downloaded and unpacked into the image cache without installing it: a
# machine may have Debian's dynamic `busybox` at /bin/busybox instead, and the
# two packages conflict. Whatever /bin/busybox is never decides.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

static() { # static FILE: true when FILE is a statically linked executable
  local out
  out=$(LC_ALL=C ldd "$1" 2>&1 || true)
  case $out in *"not a dynamic executable"* | *"statically linked"*) return 0 ;; esac
  return 1
}

if dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' && static /bin/busybox; then
  printf '%s %s\n' /bin/busybox "$(dpkg-query -W -f '${Version}' busybox-static)"
  exit 0
fi
dir=$IMAGE_CACHE/busybox-static
if [ ! -x "$dir/bin/busybox" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  apt-get update -q >/dev/null
  (cd "$tmp" && apt-get download -q busybox-static >/dev/null)
  rm -rf "$dir.new" && mkdir -p "$dir.new"
  dpkg-deb -x "$tmp"/busybox-static_*.deb "$dir.new"
  dpkg-deb -f "$tmp"/busybox-static_*.deb Version > "$dir.new/VERSION"
  rm -rf "$dir" && mv "$dir.new" "$dir"
fi
static "$dir/bin/busybox" || { echo "busybox: $dir/bin/busybox is not static" >&2; exit 1; }
printf '%s %s\n' "$dir/bin/busybox" "$(cat "$dir/VERSION")"
