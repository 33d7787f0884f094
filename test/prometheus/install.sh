#!/usr/bin/env bash
# Prometheus and promtool for the monitoring tests (tests/e2e/test_monitoring.py): Debian's `prometheus`
# package (bookworm: 2.42, with promtool), installed with apt-get when either is missing (as root). A
# build step, never run by a test. Prints the directory that holds both as the last line on stdout.
set -euo pipefail

found() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if ! found; then
  if [ "$(id -u)" != 0 ]; then
    echo "make prometheus: prometheus and promtool are not on PATH; as root this installs Debian's" \
         "prometheus package (apt-get install prometheus), or put both on PATH yourself" >&2
    exit 2
  fi
  echo "[prometheus] installing Debian's prometheus package (prometheus and promtool)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends prometheus >/dev/null; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends prometheus >/dev/null
  fi
  found || { echo "make prometheus: installed, yet prometheus or promtool is not on PATH" >&2; exit 1; }
fi
echo "[prometheus] $(prometheus --version 2>&1 | head -n 1)" >&2
dirname "$(command -v promtool)"
