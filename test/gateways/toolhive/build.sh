#!/usr/bin/env bash
# Builds ToolHive for the gateway tests from the Go module beside this script (github.com/stacklok/toolhive,
# the version its go.mod requires) into a cache outside the repository:
#
#   ${TOOLCATALOG_CACHE:-~/.cache/toolcatalog}/toolhive/<version>/
#     toolhive-runner   our main.go: ToolHive's proxy runner library in front of a remote MCP server
#     thv-operator      ToolHive's Kubernetes operator (renders MCPRemoteProxy + MCPToolConfig into a RunConfig)
#     crds/             the CRDs the tests apply: mcptoolconfigs, mcpservers, virtualmcpservers, mcpwebhookconfigs
#     operator-crds/    every CRD of ToolHive's chart (thv-operator watches all of its kinds)
#
# `build.sh crds` only downloads the module and extracts the CRDs (seconds). The binaries are rebuilt
# only when they are missing or when go.mod, go.sum or main.go changed. Progress goes to stderr; the
# last line on stdout is the directory. Needs Go (GOTOOLCHAIN=local: the Go on PATH) and the module
# proxy; no cgo. A cold build takes about ten minutes on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
module=github.com/stacklok/toolhive
version="$(awk -v m="$module" '$1 == m {print $2} $1 == "require" && $2 == m {print $3}' "$here/go.mod" | head -1)"
[ -n "$version" ] || { echo "build.sh: no $module version in $here/go.mod" >&2; exit 2; }
cache="${TOOLCATALOG_CACHE:-$HOME/.cache/toolcatalog}"
out="$cache/toolhive/$version"
mkdir -p "$out"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
command -v go >/dev/null || { echo "build.sh: Go is not on PATH (the gateway tier needs Go 1.26+)" >&2; exit 2; }

log() { printf '[toolhive %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The CRDs, from the module as the proxy serves it (no build).
crds() {
  local dir want="toolhive.stacklok.dev_mcptoolconfigs toolhive.stacklok.dev_mcpservers"
  want="$want toolhive.stacklok.dev_virtualmcpservers toolhive.stacklok.dev_mcpwebhookconfigs"
  dir="$(cd "$here" && go mod download -json "$module@$version" | awk -F'"' '$2 == "Dir" {print $4}')"
  [ -d "$dir/deploy/charts/operator-crds/files/crds" ] || { log "no CRDs in $dir"; exit 1; }
  rm -rf "$out/crds" "$out/operator-crds"
  mkdir -p "$out/crds" "$out/operator-crds"
  cp "$dir"/deploy/charts/operator-crds/files/crds/*.yaml "$out/operator-crds/"
  for name in $want; do cp "$dir/deploy/charts/operator-crds/files/crds/$name.yaml" "$out/crds/"; done
  chmod -R u+w "$out/crds" "$out/operator-crds"
  log "CRDs of $module $version in $out/crds ($(ls "$out/crds" | wc -l)) and $out/operator-crds ($(ls "$out/operator-crds" | wc -l))"
}

# go build -v names each package as it compiles it: turn that into a line every 100 packages.
progress() {
  awk '{ n++; if (n % 100 == 0) { printf "[toolhive] %d packages compiled\n", n > "/dev/stderr"; fflush("/dev/stderr") } }
       /^(#|go: |.*\.go:[0-9]+)/ { print > "/dev/stderr" }'
}

build() {
  local stamp="$out/.build.stamp" want have="" missing=0 name
  want="$(cd "$here" && cat go.mod go.sum main.go | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && have="$(cat "$stamp")"
  for name in toolhive-runner thv-operator; do [ -x "$out/$name" ] || missing=1; done
  [ "$missing" = 0 ] && [ "$want" = "$have" ] && return 0
  log "building toolhive-runner and thv-operator ($module $version) into $out; a cold build takes ~10 minutes on 2 cores"
  local started=$SECONDS status
  set +e
  (cd "$here" && go build -v -trimpath -ldflags "-s -w" -o "$out/toolhive-runner" . 2>&1) | progress
  status=${PIPESTATUS[0]}
  if [ "$status" = 0 ]; then
    (cd "$here" && go build -v -trimpath -ldflags "-s -w" -o "$out/thv-operator" "$module/cmd/thv-operator" 2>&1) | progress
    status=${PIPESTATUS[0]}
  fi
  set -e
  [ "$status" = 0 ] || { log "building failed"; exit "$status"; }
  echo "$want" > "$stamp"
  log "built in $((SECONDS - started))s"
}

started=$SECONDS
crds
[ "${1:-}" = crds ] || build
log "ToolHive $version ready in $out ($((SECONDS - started))s)"
echo "$out"
