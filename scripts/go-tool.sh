#!/usr/bin/env bash
# Helm, Litestream, the test cluster's NetworkPolicy agent and govulncheck are not packaged for
# this machine: build one from the Go module proxy, once, at the version scripts/versions.env
# names, and keep the binary outside the clone (like e2e/cluster.sh's), so a fresh clone (CI's)
# reuses it. Prints the binary's path.
#
#   scripts/go-tool.sh helm|litestream|kube-network-policies|govulncheck
#
# HELM=/path or LITESTREAM=/path uses that binary instead (the tests pass the one they found).
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/versions.env
source "$ROOT/scripts/versions.env"

name=${1:?usage: scripts/go-tool.sh helm|litestream|kube-network-policies|govulncheck}
build=(env)
case $name in
  helm)
    version=$HELM_VERSION minutes=3 package=helm.sh/helm/v4/cmd/helm
    # Without it, `helm version` reports no version and chart kubeVersion checks misfire.
    ldflags="-X helm.sh/helm/v4/internal/version.version=$version"
    build+=(GOTOOLCHAIN="$HELM_GO_TOOLCHAIN") toolchain=$HELM_GO_TOOLCHAIN ;;
  litestream)
    version=$LITESTREAM_VERSION minutes=4 package=github.com/benbjohnson/litestream/cmd/litestream
    ldflags="-X main.Version=$version"
    # It needs cgo (SQLite) and links libc dynamically.
    build+=(GOTOOLCHAIN="$LITESTREAM_GO_TOOLCHAIN" CGO_ENABLED=1)
    toolchain=$LITESTREAM_GO_TOOLCHAIN ;;
  kube-network-policies)
    # Static: it runs from a scratch image in the test cluster (e2e/cluster.sh).
    version=$KUBE_NETWORK_POLICIES_VERSION minutes=2 package=sigs.k8s.io/kube-network-policies/cmd
    ldflags="" build+=(CGO_ENABLED=0) ;;
  govulncheck)  # scripts/vulncheck.py
    version=$GOVULNCHECK_VERSION minutes=1 package=golang.org/x/vuln/cmd/govulncheck ldflags="" ;;
  *) echo "scripts/go-tool.sh: no recipe for '$name' (helm, litestream, kube-network-policies," \
       "govulncheck)" >&2
     exit 2 ;;
esac
override=${name^^}
override=${override//-/_}
# A binary built with a pinned Go is kept per toolchain too: a newer Go's fixes reach it.
binary=${!override:-${XDG_CACHE_HOME:-$HOME/.cache}/app-python/$name-$version${toolchain:+-$toolchain}/$name}

if [[ ! -x $binary ]]; then
  echo "[$name] building $name $version into ${binary%/*} (the first time: about $minutes minutes)" >&2
  # -w, not -s: the symbol table stays, from which govulncheck reads what a binary holds.
  "${build[@]}" GOBIN="${binary%/*}" go install -trimpath -ldflags "-w $ldflags" "$package@$version"
  # go install names the binary after the package's last element ("cmd").
  [[ ${package##*/} == "$name" ]] || mv "${binary%/*}/${package##*/}" "$binary"
fi
echo "$binary"
