# shellcheck shell=bash
# Shared by base.sh, build.sh and podman.sh: how podman is run on these machines, set entirely by
# command-line flags so that nothing global (containers.conf, storage.conf) has to be edited.
#
#   --runtime runc            crun fails on hosts with hybrid cgroups (v1 controllers + v2 "unified");
#                             Debian's runc works there.
#   --cgroup-manager cgroupfs there is no systemd (PID 1 is not systemd, so no D-Bus to ask for scopes).
#   --events-backend file     journald is the default and is not there either.
#   storage driver            podman's own choice, which is overlay here (the kernel's overlayfs on
#                             ext4, native diff) and vfs where overlay cannot work (e.g. a store that
#                             sits on an overlayfs). Not forced by default: libpod records the driver
#                             of its first run in its database and refuses a different explicit one
#                             later ("database configuration mismatch"), so forcing one would break a
#                             store that plain `podman` has used. TOOLCATALOG_PODMAN_STORAGE_DRIVER
#                             (overlay or vfs) forces one, e.g. on a fresh machine.
#   --ulimit nofile=1024:1024 --ulimit nproc=1024:1024   for `run` and `build`: the limits podman asks
#                             for by default are refused by these hosts.
#   --network host            for `build` and `run`: RUN steps reach the package index the way the host
#                             does, and the test's container reaches loopback servers; no CNI/netavark
#                             bridge (iptables) is needed.
#
# Root only (rootless podman needs subuid ranges, a user session and more).

IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$IMAGE_DIR/../.." && pwd)"

LOCK_DIR=/run/lock
[ -d "$LOCK_DIR" ] && [ -w "$LOCK_DIR" ] || LOCK_DIR="${TMPDIR:-/tmp}"

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

PODMAN_GLOBAL=(
  --runtime "${TOOLCATALOG_PODMAN_RUNTIME:-runc}"
  --cgroup-manager cgroupfs
  --events-backend file
  ${TOOLCATALOG_PODMAN_STORAGE_DRIVER:+--storage-driver "$TOOLCATALOG_PODMAN_STORAGE_DRIVER"}
)
PODMAN_LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# (the lock descriptors of build.sh and base.sh stay out of podman and its conmon processes)
pm() { podman "${PODMAN_GLOBAL[@]}" "$@" 8>&- 9>&-; }

# Install what is missing (apt, as root): podman, runc and, when a base must be made, debootstrap.
ensure_tools() {
  local need=() tool
  for tool in podman runc "$@"; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
  done
  [ "${#need[@]}" = 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "${need[*]} missing, and only root can install them (apt-get install ${need[*]})"
  command -v apt-get >/dev/null 2>&1 || die "${need[*]} missing and there is no apt-get to install them"
  log "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  local wait=(-o DPkg::Lock::Timeout=300)   # another apt-get may be running: wait for it
  apt-get "${wait[@]}" update -qq >&2
  # --no-install-recommends: no crun (see above), no buildah/fuse-overlayfs/slirp4netns (rootless only).
  apt-get "${wait[@]}" install -y -qq --no-install-recommends "${need[@]}" >&2
}

require_root() {
  [ "$(id -u)" = 0 ] || die "podman is set up here for root only (run as root, e.g. in CI)"
}

# The base image's name: base.sh's suite and a hash of base.sh itself (a changed recipe makes a new base).
BASE_SUITE=bookworm
base_name() { echo "toolcatalog-base:$BASE_SUITE-$(sha256sum "$IMAGE_DIR/base.sh" | cut -c1-12)"; }
