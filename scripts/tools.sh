#!/usr/bin/env bash
# Client tools the compatibility tests use, installed from Debian packages.
#
#   scripts/tools.sh install   apt-get install what is missing (kcat: librdkafka's CLI)
#   scripts/tools.sh status    one line per tool: installed or not, and its version
#
# Tests that need a tool skip with a message naming this script when it is not installed.
set -euo pipefail

TOOLS=(kcat)

status() {
  for tool in "${TOOLS[@]}"; do
    if command -v "$tool" >/dev/null 2>&1; then
      printf '%s installed: %s\n' "$tool" "$("$tool" -V 2>/dev/null | head -1)"
    else
      printf '%s not installed (bash scripts/tools.sh install)\n' "$tool"
    fi
  done
}

install() {
  local missing=()
  for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    status
    return
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
  status
}

case ${1:-status} in
install) install ;;
status) status ;;
*)
  printf 'usage: scripts/tools.sh install|status\n' >&2
  exit 2
  ;;
esac
