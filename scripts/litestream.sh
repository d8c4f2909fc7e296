#!/usr/bin/env bash
# Litestream (continuous replication of SQLite to S3) is not packaged for this machine: build it
# from the Go module proxy, once, and keep the binary outside the clone (like scripts/helm.sh's),
# so a fresh clone (CI's) reuses it. It needs cgo and links libc dynamically.
#
#   scripts/litestream.sh            build if missing, print the binary's path (make litestream)
#   scripts/litestream.sh image      build it if missing, then its image (make litestream-image):
#                                    scripts/litestream.Dockerfile, tagged app-python-litestream:VERSION
#   scripts/litestream.sh ARGS...    run litestream with ARGS
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LITESTREAM_VERSION=v0.5.18
# Its go.mod asks for a newer Go than the machine's; the module proxy serves that toolchain.
GO_TOOLCHAIN=go1.27.3
LITESTREAM=${LITESTREAM:-${XDG_CACHE_HOME:-$HOME/.cache}/app-python/litestream-$LITESTREAM_VERSION/litestream}

if [[ ! -x $LITESTREAM ]]; then
  echo "[litestream] building Litestream $LITESTREAM_VERSION into ${LITESTREAM%/*} (the first time: about 4 minutes)" >&2
  GOTOOLCHAIN=$GO_TOOLCHAIN GOBIN=${LITESTREAM%/*} CGO_ENABLED=1 go install -trimpath \
    -ldflags "-s -w -X main.Version=$LITESTREAM_VERSION" \
    "github.com/benbjohnson/litestream/cmd/litestream@$LITESTREAM_VERSION"
fi

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
