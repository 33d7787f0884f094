#!/usr/bin/env bash
# Installs IBM ContextForge (PyPI mcp-contextforge-gateway, the version in requirements.txt) into a virtual
# environment of its own, outside the repository and the project's .venv (it needs mcp 1.x):
#
#   ${TOOLCATALOG_CACHE:-~/.cache/toolcatalog}/contextforge/<version>/venv/bin/mcpgateway
#
# Reinstalled only when requirements.txt or constraints.txt changed. Progress goes to stderr; the last line
# on stdout is the directory. Needs python3 (3.11+) and PyPI. About a minute and ~250 MB cold.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk -F'==' '/^mcp-contextforge-gateway==/ {print $2}' "$here/requirements.txt")"
[ -n "$version" ] || { echo "install.sh: no mcp-contextforge-gateway version in $here/requirements.txt" >&2; exit 2; }
cache="${TOOLCATALOG_CACHE:-$HOME/.cache/toolcatalog}"
out="$cache/contextforge/$version"
python="${PYTHON:-python3}"

log() { printf '[contextforge %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

want="$(cd "$here" && cat requirements.txt $(ls constraints.txt 2>/dev/null) | sha256sum | cut -c1-16)"
have="$(cat "$out/.install.stamp" 2>/dev/null || true)"
if [ "$want" != "$have" ] || [ ! -x "$out/venv/bin/mcpgateway" ]; then
  started=$SECONDS
  log "installing mcp-contextforge-gateway $version into $out/venv"
  rm -rf "$out/venv"
  mkdir -p "$out"
  "$python" -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  constraints=()
  [ -f "$here/constraints.txt" ] && constraints=(-c "$here/constraints.txt")
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" "${constraints[@]}" >&2
  echo "$want" > "$out/.install.stamp"
  log "installed in $((SECONDS - started))s ($(du -sm "$out/venv" | cut -f1) MB)"
fi
log "ContextForge $version ready in $out"
echo "$out"
