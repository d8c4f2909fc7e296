#!/usr/bin/env bash
# Installs podman + runc (+ debootstrap for the stand-in base image) from Debian and configures
# podman for machines like CI's: crun fails on hybrid cgroups ("cgroups in hybrid mode not
# supported") and podman's default rlimits exceed what the sandbox allows (setrlimit EPERM).
# Needs root. Safe to run again.
set -o errexit -o nounset -o pipefail

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap uidmap >/dev/null
fi

mkdir -p /etc/containers/containers.conf.d
cat >/etc/containers/containers.conf.d/50-app-python.conf <<'CONF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
podman info --format 'podman {{.Version.Version}}: runtime {{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupManager}}'
