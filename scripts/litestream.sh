#!/usr/bin/env bash
# Litestream (continuous replication of SQLite to S3), built by scripts/go-tool.sh (once, cached
# outside the clone).
#
#   scripts/litestream.sh            build if missing, print the binary's path
#   scripts/litestream.sh image      build it if missing, then its image (make litestream-image):
#                                    scripts/litestream.Dockerfile, tagged app-python-litestream:VERSION
#   scripts/litestream.sh ARGS...    run litestream with ARGS
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/versions.env
source "$ROOT/scripts/versions.env"
LITESTREAM=$(bash "$ROOT/scripts/go-tool.sh" litestream)

case ${1:-} in
  "") echo "$LITESTREAM" ;;
  image)
    # A context of the binary alone; ENGINE and BUILD_FLAGS as the Makefile passes them.
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    cp "$LITESTREAM" "$context/litestream"
    # shellcheck disable=SC2086  # BUILD_FLAGS is a list of flags
    ${ENGINE:-podman} build ${BUILD_FLAGS:-} --build-arg VERSION="$LITESTREAM_VERSION" \
      -f "$ROOT/scripts/litestream.Dockerfile" -t "app-python-litestream:$LITESTREAM_VERSION" "$context" ;;
  *) exec "$LITESTREAM" "$@" ;;
esac
