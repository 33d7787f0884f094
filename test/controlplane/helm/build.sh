#!/usr/bin/env bash
# Builds helm (v3, the `tool` of the Go module beside this script) for the deploy tests, and fetches
# cert-manager's Certificate and Issuer CRDs and prometheus-operator's ServiceMonitor and PrometheusRule
# CRDs (from their Go modules, pinned below; downloaded, never built) so that a real API server can
# validate the webhook's and the monitoring objects. Into a cache outside the repository:
#
#   ${TOOLCATALOG_CACHE:-~/.cache/toolcatalog}/helm/<helm version>/{helm,crds/}
#
# helm is built only when it is missing or when go.mod/go.sum changed (a stamp holds their hash), as
# test/controlplane/build.sh does for the control plane. Prints progress on stderr and the directory
# as the last line on stdout. Needs Go (GOTOOLCHAIN=local: the Go on PATH) and the Go module proxy.
#
#   build.sh --check   builds and fetches nothing: prints the directory when helm and the CRDs are there
#                      and up to date, else says what is missing and exits 3 (for test fixtures).
set -euo pipefail

check=0
[ "${1:-}" = "--check" ] && check=1

here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$here/go.mod")"
k8s="$(awk '$1 == "k8s.io/client-go" {print $2}' "$here/go.mod")"           # v0.MINOR.PATCH
[ -n "$version" ] && [ -n "$k8s" ] || { echo "helm/build.sh: no helm or client-go version in go.mod" >&2; exit 2; }
cache="${TOOLCATALOG_CACHE:-$HOME/.cache/toolcatalog}"
out="$cache/helm/$version"
mkdir -p "$out/crds"

# prometheus-operator's ServiceMonitor and PrometheusRule CRDs (its module's example/prometheus-operator-crd/),
# for the monitoring objects of deploy/components/monitoring and the chart's metrics.* values.
promop_version=v0.85.0
promop_sum="h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="
promop_crds="monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml"

# cert-manager's CRDs for the tests (its repository's deploy/crds/, "for development and testing").
certmanager_version=v1.21.2
certmanager_sum="h1:UWgoYM+KLNtRlqmoWOKjKBOBUPVHeepQ6/ac3ERJW68="
certmanager_crds="cert-manager.io_certificates.yaml cert-manager.io_issuers.yaml"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
[ "$check" = 1 ] || command -v go >/dev/null || { echo "helm/build.sh: Go is not on PATH (needs Go 1.26+)" >&2; exit 2; }

log() { printf '[helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stamp="$out/.helm.stamp"
want="$(cd "$here" && cat go.mod go.sum | sha256sum | cut -c1-16)"
have=""
[ -f "$stamp" ] && have="$(cat "$stamp")"
if [ ! -x "$out/helm" ] || [ "$want" != "$have" ]; then
  if [ "$check" = 1 ]; then log "helm $version is not built, or go.mod changed since: run \`make helm\`"; exit 3; fi
  minor="${k8s#v0.}"; minor="${minor%%.*}"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldflags="$ldflags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ldflags="$ldflags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  log "building helm $version into $out (a cold build takes a few minutes on 2 cores)"
  started=$SECONDS
  (cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$out/helm" helm.sh/helm/v3/cmd/helm)
  echo "$want" > "$stamp"
  log "built helm in $((SECONDS - started))s"
fi

missing=0
for crd in $certmanager_crds; do [ -s "$out/crds/$crd" ] || missing=1; done
if [ "$missing" = 1 ]; then
  if [ "$check" = 1 ]; then log "cert-manager's CRDs are not fetched: run \`make helm\`"; exit 3; fi
  log "fetching cert-manager $certmanager_version's CRDs (its Go module)"
  info="$(cd "$here" && GOFLAGS= go mod download -json "github.com/cert-manager/cert-manager@$certmanager_version")"
  dir="$(printf '%s' "$info" | awk -F'"' '$2 == "Dir" {print $4}')"
  sum="$(printf '%s' "$info" | awk -F'"' '$2 == "Sum" {print $4}')"
  [ "$sum" = "$certmanager_sum" ] || { log "cert-manager $certmanager_version: checksum $sum, expected $certmanager_sum"; exit 1; }
  for crd in $certmanager_crds; do install -m 0644 "$dir/deploy/crds/$crd" "$out/crds/$crd"; done
fi

missing=0
for crd in $promop_crds; do [ -s "$out/crds/$crd" ] || missing=1; done
if [ "$missing" = 1 ]; then
  log "fetching prometheus-operator $promop_version's ServiceMonitor and PrometheusRule CRDs (its Go module)"
  info="$(cd "$here" && GOFLAGS= go mod download -json "github.com/prometheus-operator/prometheus-operator@$promop_version")"
  dir="$(printf '%s' "$info" | awk -F'"' '$2 == "Dir" {print $4}')"
  sum="$(printf '%s' "$info" | awk -F'"' '$2 == "Sum" {print $4}')"
  [ "$sum" = "$promop_sum" ] || { log "prometheus-operator $promop_version: checksum $sum, expected $promop_sum"; exit 1; }
  for crd in $promop_crds; do install -m 0644 "$dir/example/prometheus-operator-crd/$crd" "$out/crds/$crd"; done
fi

echo "$out"
