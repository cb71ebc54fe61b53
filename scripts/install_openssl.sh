#!/usr/bin/env bash
# Installs the openssl command the TLS tests use to make throwaway certificates
# (test/protocol/security/certs.ts). Debian and Ubuntu only; elsewhere, install it yourself.
set -euo pipefail
if command -v openssl >/dev/null 2>&1; then
  echo "openssl is installed: $(openssl version)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "openssl is missing and apt-get is not here: install openssl with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q openssl
openssl version
