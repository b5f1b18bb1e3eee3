#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser test (tests/web), when they are
# missing and we are root with apt-get. Never fails the set-up: without them that test is skipped
# and says why.
set -uo pipefail
have() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }
if have; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "browser: chromium/chromedriver missing and cannot install them here (needs root and apt-get);" \
         "the browser test will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
    # an image without package lists: refresh them, then try once more
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || true
fi
if have; then
    echo "browser: $(chromium --version 2>/dev/null | head -1) and chromedriver installed"
else
    echo "browser: apt-get could not install chromium chromium-driver; the browser test will be skipped" >&2
fi
exit 0
