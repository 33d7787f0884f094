#!/usr/bin/env bash
# Fetches ToolHive's CRDs (MCPToolConfig, MCPServer, VirtualMCPServer, MCPWebhookConfig) from its Go
# module, pinned below, for the ToolAllowlist tests: download only, no build (seconds). Into a cache
# outside the repository (ToolHive's files are not committed here):
#
#   ${TOOLCATALOG_CACHE:-~/.cache/toolcatalog}/toolhive/<version>/crds/
#
# As test/controlplane/helm/build.sh does for cert-manager's CRDs, the module's checksum must match.
# Progress goes to stderr; the last line on stdout is the directory. Needs Go and the module proxy.
set -euo pipefail

module=github.com/stacklok/toolhive
version=v0.47.0        # the newest whose whole dependency graph the module proxy serves here
sum="h1:2GBpOHfuQg/1j0gK26iwvn8/qKSpfauHBhpnTHTsiO4="
crds="mcptoolconfigs mcpservers virtualmcpservers mcpwebhookconfigs"

cache="${TOOLCATALOG_CACHE:-$HOME/.cache/toolcatalog}"
out="$cache/toolhive/$version/crds"
log() { printf '[toolhive-crds %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

missing=0
for crd in $crds; do [ -s "$out/toolhive.stacklok.dev_$crd.yaml" ] || missing=1; done
if [ "$missing" = 1 ]; then
  command -v go >/dev/null || { log "Go is not on PATH"; exit 2; }
  log "fetching $module $version's CRDs (its Go module, download only)"
  info="$(cd "$(mktemp -d)" && GOTOOLCHAIN=local GOFLAGS= go mod download -json "$module@$version")"
  dir="$(printf '%s' "$info" | awk -F'"' '$2 == "Dir" {print $4}')"
  got="$(printf '%s' "$info" | awk -F'"' '$2 == "Sum" {print $4}')"
  [ "$got" = "$sum" ] || { log "$module $version: checksum $got, expected $sum"; exit 1; }
  mkdir -p "$out"
  for crd in $crds; do
    install -m 0644 "$dir/deploy/charts/operator-crds/files/crds/toolhive.stacklok.dev_$crd.yaml" "$out/"
  done
fi
echo "$out"
