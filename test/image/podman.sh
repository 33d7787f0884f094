#!/usr/bin/env bash
# podman as this project runs it on these machines (see lib.sh): the same flags for every command,
# and the lowered limits for `run`, `create` and `build`. E.g.
#   bash test/image/podman.sh run --rm --network host toolcatalog:dev --help
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
case "${1:-}" in
  run | create | build) exec podman "${PODMAN_GLOBAL[@]}" "$1" "${PODMAN_LIMITS[@]}" "${@:2}" ;;
  *) exec podman "${PODMAN_GLOBAL[@]}" "$@" ;;
esac
