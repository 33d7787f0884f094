#!/usr/bin/env bash
# Builds the operator's container image with podman (`make image`), on a machine with no Docker
# engine and no container registry in reach:
#
#   1. installs podman and runc (and debootstrap) with apt-get when they are missing (root);
#   2. makes the base image with base.sh (debootstrap bookworm + python3), once: it is cached;
#   3. builds the Dockerfile on that base (--build-arg BASE_IMAGE), unless an image of exactly these
#      sources already exists.
#
# Caching: the image is also tagged toolcatalog:build-<key>, the key hashing the base image's ID
# and every file that goes into the build (Dockerfile, .dockerignore, pyproject.toml, README.md,
# operator/toolcatalog/ without bytecode, as .dockerignore lets in). With that tag present nothing is
# run; otherwise podman's layer cache still skips the dependency layer unless pyproject.toml changed.
#
# Environment:
#   TOOLCATALOG_IMAGE        the image's name (default toolcatalog:dev)
#   TOOLCATALOG_BASE_IMAGE   a base already in podman's store instead of the debootstrap one, e.g.
#                            python:3.11-slim-bookworm where it can be pulled
#   TOOLCATALOG_PODMAN_*     see lib.sh
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL   passed to the build stage when set
#   PIP_CERT / REQUESTS_CA_BUNDLE / SSL_CERT_FILE   the CA bundle the build stage's pip trusts
#                            (default: the system bundle), given as a build secret, in no layer
#
# Prints progress on stderr and the image's name as the last line on stdout. Root only.
#
#   build.sh --check   builds and installs nothing: prints the image's name when an image of exactly these
#                      sources exists, else says so and exits 3 (for test fixtures: nothing is built inside
#                      a test's timeout; `.ci/run` and `make image` build).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

IMAGE="${TOOLCATALOG_IMAGE:-toolcatalog:dev}"
started=$SECONDS
check=0
[ "${1:-}" = "--check" ] && check=1
not_built() { log "$*: run \`make image\`"; exit 3; }

require_root
[ "$check" = 0 ] || command -v podman >/dev/null 2>&1 || not_built "podman is not installed"
# One build at a time on this machine (two test sessions may both ask for the image): wait for it.
exec 9> "$LOCK_DIR/toolcatalog-image.lock"
flock 9 || die "cannot lock $LOCK_DIR/toolcatalog-image.lock"
if [ -n "${TOOLCATALOG_BASE_IMAGE:-}" ]; then
  [ "$check" = 1 ] || ensure_tools
  BASE="$TOOLCATALOG_BASE_IMAGE"
  pull=missing
elif [ "$check" = 1 ]; then
  BASE="$(base_name)"
  pm image exists "$BASE" || not_built "the base image $BASE is not made"
else
  ensure_tools debootstrap
  BASE="$(bash "$IMAGE_DIR/base.sh" | tail -n 1)"
  pull=never
fi
base_id="$(pm image inspect --format '{{.Id}}' "$BASE" 2>/dev/null || echo "$BASE")"

# The files the build context holds (see .dockerignore), in a stable order, and the base.
key="$(
  cd "$REPO"
  {
    echo "base $base_id"
    sha256sum Dockerfile .dockerignore pyproject.toml README.md
    find operator/toolcatalog -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)"
KEYED="${IMAGE%:*}:build-$key"

size_of() { pm image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1 / 1e6}'; }

if [ "$check" = 1 ] && ! pm image exists "$KEYED"; then
  not_built "no image of these sources ($KEYED)"
fi
if pm image exists "$KEYED"; then
  pm tag "$KEYED" "$IMAGE"
  log "image $IMAGE is up to date ($KEYED, $(size_of "$IMAGE")); nothing to build"
  echo "$IMAGE"
  exit 0
fi

args=(--pull="$pull" --network host "${PODMAN_LIMITS[@]}" --layers
      --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" -t "$KEYED" -f "$REPO/Dockerfile")
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL; do
  if [ -n "${!var:-}" ]; then args+=(--build-arg "$var=${!var}"); fi
done
for ca in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$ca" ] && [ -s "$ca" ]; then
    args+=(--secret "id=pip-ca,src=$ca")
    break
  fi
done

log "building $IMAGE on $BASE (key $key)"
build_started=$SECONDS
pm build "${args[@]}" "$REPO" >&2
log "built $IMAGE in $((SECONDS - build_started))s ($(size_of "$IMAGE"))"

# Forget the keys of earlier builds but the four newest (their layers stay in podman's cache until
# pruned): other checkouts of the repository on this machine (worktrees, a CI clone) keep theirs while
# their tests run.
pm images --sort created --format '{{.Repository}}:{{.Tag}}' \
  | { grep -E "(^|/)${IMAGE%:*}:build-[0-9a-f]{16}\$" || true; } | tail -n +5 \
  | while read -r old; do
      [ "${old##*:}" = "build-$key" ] || pm rmi "$old" >/dev/null 2>&1 || true
    done
log "done in $((SECONDS - started))s"
echo "$IMAGE"
