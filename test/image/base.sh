#!/usr/bin/env bash
# Makes the base image when no registry can be reached: a minimal Debian bookworm root filesystem
# (debootstrap --variant=minbase, with python3 3.11 and python3-venv) imported with `podman import`.
# It stands in for python:3.11-slim-bookworm as the Dockerfile's BASE_IMAGE.
#
# Cached: the tag is toolcatalog-base:bookworm-<hash of this script>, made only when missing, so
# changing the package list or the clean-up here makes a new base. Security updates come in only
# when the base is made anew (delete the image, or change this script).
#
# Prints progress on stderr and the base image's name as the last line on stdout. Root only.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SUITE=$BASE_SUITE
# python3-venv: `python3 -m venv` with pip (ensurepip) for the build stage; ca-certificates and
# netbase as in the official slim image (TLS roots, /etc/services and /etc/protocols).
PACKAGES=python3,python3-venv,ca-certificates,netbase

BASE="$(base_name)"

require_root
ensure_tools debootstrap
exec 8> "$LOCK_DIR/toolcatalog-base.lock"
flock 8 || die "cannot lock $LOCK_DIR/toolcatalog-base.lock"
if pm image exists "$BASE"; then
  log "base image $BASE is cached"
  echo "$BASE"
  exit 0
fi

# The Debian mirrors this machine's apt already uses (so no host is named here); debootstrap's own
# default when apt knows none. TOOLCATALOG_DEBIAN_MIRROR / TOOLCATALOG_DEBIAN_SECURITY override.
apt_uri() { apt-cache policy 2>/dev/null | awk -v want="$1/main" '$3 == want {print $2; exit}'; }
mirror="${TOOLCATALOG_DEBIAN_MIRROR:-$(apt_uri "$SUITE")}"
security="${TOOLCATALOG_DEBIAN_SECURITY:-$(apt_uri "$SUITE-security")}"

started=$SECONDS
work="$(mktemp -d /var/tmp/toolcatalog-base.XXXXXX)"
rootfs="$work/rootfs"
cleanup() {
  # debootstrap and the chroot steps may leave /proc mounted when interrupted.
  umount "$rootfs/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

log "making base image $BASE: debootstrap $SUITE minbase + $PACKAGES (takes a few minutes)"
# shellcheck disable=SC2086
debootstrap --variant=minbase --components=main --include="$PACKAGES" "$SUITE" "$rootfs" $mirror \
  > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
log "debootstrap done in $((SECONDS - started))s"

# Stable updates and security fixes on top, when the mirrors are known.
if [ -n "$mirror" ]; then
  {
    echo "deb $mirror $SUITE main"
    echo "deb $mirror $SUITE-updates main"
    [ -n "$security" ] && echo "deb $security $SUITE-security main"
  } > "$rootfs/etc/apt/sources.list"
  log "applying $SUITE-updates and $SUITE-security"
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade' \
    > "$work/upgrade.log" 2>&1 || { tail -30 "$work/upgrade.log" >&2; die "apt-get upgrade in the chroot failed"; }
  umount "$rootfs/proc"
fi

# Slim it down: package caches and lists, docs (but the copyright files), man pages, translations,
# logs; and what belongs to the machine that made it (resolv.conf and hostname are the container
# engine's business).
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.cache
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
: > "$rootfs/etc/resolv.conf"
: > "$rootfs/etc/hostname"
python_version="$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')"

log "importing the root filesystem ($(du -sh --apparent-size "$rootfs" | cut -f1)) as $BASE"
tar --numeric-owner --xattrs -C "$rootfs" -cf - . | pm import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase with Python $python_version (debootstrap), made by test/image/base.sh\"" \
  --message "debootstrap $SUITE minbase + $PACKAGES" \
  - "$BASE" >/dev/null
log "base image $BASE (Python $python_version) made in $((SECONDS - started))s"

# Earlier bases go (untagged only, while images built on them still use them).
pm images --format '{{.Repository}}:{{.Tag}}' | { grep -E "(^|/)${BASE%%:*}:" || true; } \
  | while read -r old; do
      [ "${old##*:}" = "${BASE##*:}" ] || pm rmi "$old" >/dev/null 2>&1 || pm untag "$old" >/dev/null 2>&1 || true
    done
echo "$BASE"
