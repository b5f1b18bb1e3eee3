#!/usr/bin/env bash
# Copies the three files of Debian's opencv-doc that the tests and benchmarks use (graf1.png,
# graf3.png and H1to3p.xml: a real viewpoint change with its ground-truth homography) into
# DEST (default .venv/share/opencv-samples). From the installed package when there is one,
# else from `apt-get download opencv-doc` (a package registry; nothing is installed system-wide).
set -euo pipefail
dest=${1:-.venv/share/opencv-samples}
files=(graf1.png graf3.png H1to3p.xml)
src=/usr/share/doc/opencv-doc/examples/data
mkdir -p "$dest"
if [ -f "$src/graf1.png" ]; then
    for f in "${files[@]}"; do cp "$src/$f" "$dest/"; done
    exit 0
fi
command -v apt-get >/dev/null || { echo "opencv-samples: no apt-get here" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -qq opencv-doc 2>/dev/null); then
    # an image without package lists: refresh them when we may
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
    (cd "$tmp" && apt-get download -qq opencv-doc 2>/dev/null)
fi
dpkg-deb -x "$tmp"/opencv-doc_*.deb "$tmp/x"
for f in "${files[@]}"; do cp "$tmp/x$src/$f" "$dest/"; done
echo "opencv-samples: ${files[*]} -> $dest"
