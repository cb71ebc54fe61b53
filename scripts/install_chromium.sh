#!/usr/bin/env bash
# Installs headless Chromium from the Debian package `chromium`, for the browser tests of the
# management page and the benchmark report (test/ops/browser.test.ts). Those tests skip, with
# a message naming this script, where no Chromium can be found.
#
#   bash scripts/install_chromium.sh      (as root; prints the binary's path)
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  command -v chromium
  exit 0
fi
[[ $(id -u) == 0 ]] || {
  echo "install_chromium.sh: needs root (apt-get): sudo bash scripts/install_chromium.sh" >&2
  exit 1
}
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "install_chromium.sh: apt-get failed installing chromium" >&2
  exit 1
fi
rm -f "$log"
command -v chromium
