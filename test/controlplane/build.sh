#!/usr/bin/env bash
# Builds the real control plane for the tests (kube-apiserver, kube-controller-manager, kubectl,
# etcd) and the kstatus health checker, from the Go modules beside this script, into a cache
# outside the repository keyed by the Kubernetes version:
#
#   ${TOOLCATALOG_CACHE:-~/.cache/toolcatalog}/controlplane/<version>/
#
# Each binary is built only when it is missing or when its module's go.mod/go.sum changed.
# Prints progress on stderr and the binaries' directory as the last line on stdout.
# Needs Go (GOTOOLCHAIN=local: the Go on PATH) and the Go module proxy; no cgo.
#
#   build.sh --check   builds nothing: prints the directory when every binary is there and up to date,
#                      else says what is missing and exits 3 (what test fixtures call: nothing is built
#                      inside a test's timeout; `.ci/run` and `make controlplane` build).
set -euo pipefail

check=0
[ "${1:-}" = "--check" ] && check=1

here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")"
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes version in $here/kubernetes/go.mod" >&2; exit 2; }
cache="${TOOLCATALOG_CACHE:-$HOME/.cache/toolcatalog}"
bin="$cache/controlplane/$version"
mkdir -p "$bin"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
[ "$check" = 1 ] || command -v go >/dev/null || { echo "build.sh: Go is not on PATH (the real-control-plane tier needs Go 1.26+)" >&2; exit 2; }

log() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# go build -v names each package as it compiles it: turn that into a line every 100 packages.
progress() {
  awk -v what="$1" '{ n++; if (n % 100 == 0) { printf "[controlplane] %s: %d packages compiled\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } }
                   /^(#|go: |.*\.go:[0-9]+)/ { print > "/dev/stderr" }'
}

# build MODULE_DIR WHAT LDFLAGS "BINARIES" PACKAGE... : (re)build one module's binaries when needed.
build() {
  local module="$1" what="$2" ldflags="$3" binaries="$4"; shift 4
  local stamp="$bin/.$what.stamp" want have="" missing=0 name
  want="$(cd "$here/$module" && cat go.mod go.sum $(ls ./*.go 2>/dev/null) | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && have="$(cat "$stamp")"
  for name in $binaries; do [ -x "$bin/$name" ] || missing=1; done
  if [ "$missing" = 0 ] && [ "$want" = "$have" ]; then
    return 0
  fi
  if [ "$check" = 1 ]; then
    log "$what ($binaries) is not built, or its module changed since: run \`make controlplane\`"
    exit 3
  fi
  local out="$bin/"
  [ "$(echo $binaries | wc -w)" = 1 ] && out="$bin/$binaries"
  log "building $what ($binaries) into $bin; a cold build takes many minutes on 2 cores"
  local started=$SECONDS
  set +e
  (cd "$here/$module" && go build -v -trimpath -ldflags "$ldflags" -o "$out" "$@" 2>&1) | progress "$what"
  local status=${PIPESTATUS[0]}
  set -e
  [ "$status" = 0 ] || { log "building $what failed"; exit "$status"; }
  for name in $binaries; do [ -x "$bin/$name" ] || { log "$what: $name is missing after the build"; exit 1; }; done
  echo "$want" > "$stamp"
  log "built $what in $((SECONDS - started))s"
}

minor="${version#v1.}"; minor="${minor%%.*}"
kube_ld="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
kube_ld="$kube_ld -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
kube_ld="$kube_ld -X k8s.io/client-go/pkg/version.gitVersion=$version"

started=$SECONDS
build etcd etcd "-s -w" etcd go.etcd.io/etcd/server/v3
build kubernetes kubernetes "$kube_ld" "kube-apiserver kube-controller-manager kubectl" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
build kstatus kstatus "-s -w" kstatus .
[ "$check" = 1 ] || log "control plane $version ready in $bin ($((SECONDS - started))s)"
echo "$bin"
