#!/usr/bin/env bash
# Makes a stand-in for the official python:3.13-slim image from Debian trixie packages
# (Python 3.13) and tags it with the official name, so the unchanged Dockerfile builds with
# --pull=never on a machine that reaches Debian's mirror but no container registry.
# Real users build against the real registry and never need this. Needs root and podman.
set -o errexit -o nounset -o pipefail

IMAGE=docker.io/library/python:3.13-slim
if podman image exists "$IMAGE"; then
  echo "$IMAGE is present: $(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12)"
  exit 0
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/app-python/debootstrap  # .debs kept for the next run
mkdir -p "$cache"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --cache-dir="$cache" \
  --include=python3,python3-venv,ca-certificates trixie "$rootfs" http://deb.debian.org/debian \
  >/dev/null
ln -s python3 "$rootfs/usr/bin/python"  # the official image has `python` on PATH
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
echo "made $IMAGE from Debian trixie: $(podman run --rm --pull=never "$IMAGE" python --version)"
