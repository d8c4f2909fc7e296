#!/usr/bin/env bash
# k8s/chart/README.md's "Parameters" section, generated from the `## @param` comments of
# k8s/chart/values.yaml by Bitnami's readme-generator-for-helm, which also refuses a value
# without a description and a description without a value. The generator comes from npm, pinned
# with every dependency and its hash in scripts/chart-readme/package-lock.json, installed once
# outside the clone (like scripts/go-tool.sh's builds), so a fresh clone (CI's) reuses it.
#
#   scripts/chart-readme.sh          install if missing, then regenerate k8s/chart/README.md
#   scripts/chart-readme.sh README   the same into another copy of it (the staleness test)
#   scripts/chart-readme.sh install  install if missing, print the generator's path
#   scripts/chart-readme.sh path     print where it is installed, installing nothing
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PACKAGE=$ROOT/scripts/chart-readme
# One directory per lock file: a new pin installs beside the old one.
key=$(sha256sum "$PACKAGE/package-lock.json" | cut -c1-12)
dir=${XDG_CACHE_HOME:-$HOME/.cache}/app-python/readme-generator-for-helm-$key
generator=$dir/node_modules/.bin/readme-generator

if [[ ${1:-} == path ]]; then
  echo "$generator"
  exit 0
fi
if [[ ! -x $generator ]]; then
  if ! command -v npm >/dev/null; then
    echo "scripts/chart-readme.sh: npm is missing (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
  echo "[chart-readme] installing readme-generator-for-helm into $dir" >&2
  rm -rf "$dir.partial"
  mkdir -p "$dir.partial"
  cp "$PACKAGE/package.json" "$PACKAGE/package-lock.json" "$dir.partial/"
  npm ci --prefix "$dir.partial" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
fi
case ${1:-} in
  install) echo "$generator" ;;
  *) "$generator" --values "$ROOT/k8s/chart/values.yaml" --readme "${1:-$ROOT/k8s/chart/README.md}" ;;
esac
