#!/usr/bin/env bash
# The StatefulSet's picture with plain containers: app-python-0..2, each with its own volume, like
# the StatefulSet's pods and PVCs, behind a client that spreads 20 visits unevenly (weighted
# round-robin 4:1:5). Prints every command and its real output; removes what it made.
# Usage: scripts/container-demo.sh   (ENGINE=podman|docker, IMAGE=app-python:VERSION)
set -o errexit -o nounset -o pipefail

ENGINE=${ENGINE:-podman}
IMAGE=${IMAGE:?set IMAGE, e.g. app-python:1.1.2}
PORT=${PORT:-18080}  # app-python-N listens on 127.0.0.1:PORT+N
PODS=(app-python-0 app-python-1 app-python-2)
# A network whose DNS answers the alias app-python-headless with every container's address,
# as the StatefulSet's headless Service does: /cluster finds its peers through it.
NETWORK=app-python-demo
# Passed by name (--env NAME), so the key never appears in the output.
DJANGO_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')
export DJANGO_SECRET_KEY
# podman schedules HEALTHCHECKs with systemd timers; without systemd it only logs errors.
# `podman healthcheck run NAME` still runs the check by hand.
health=()
[[ $ENGINE == podman && ! -d /run/systemd/system ]] && health=(--health-interval=disable)

run() { printf '$ %s\n' "$*"; "$@"; }
cleanup() {
  for pod in "${PODS[@]}"; do
    "$ENGINE" rm -f -t 30 "$pod" >/dev/null 2>&1 || true
    "$ENGINE" volume rm -f "data-$pod" >/dev/null 2>&1 || true
  done
  "$ENGINE" network rm -f "$NETWORK" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

run "$ENGINE" network create "$NETWORK"
for n in "${!PODS[@]}"; do
  pod=${PODS[$n]}
  run "$ENGINE" volume create "data-$pod"
  run "$ENGINE" run --detach --name "$pod" --read-only --cap-drop ALL \
    --security-opt no-new-privileges --tmpfs /tmp --volume "data-$pod:/app/data" \
    --network "$NETWORK" --network-alias app-python-headless \
    --publish "127.0.0.1:$((PORT + n)):8000" --env POD_NAME="$pod" \
    --env VISITS_PEER_SERVICE=app-python-headless \
    --env DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1,app-python-headless \
    --env DJANGO_SECRET_KEY "${health[@]}" "$IMAGE"
done
for n in "${!PODS[@]}"; do
  for attempt in $(seq 300); do
    curl -fs -o /dev/null "http://127.0.0.1:$((PORT + n))/readyz" && break
    if ((attempt == 300)); then
      echo "${PODS[$n]} did not become ready:" >&2
      "$ENGINE" logs "${PODS[$n]}" >&2
      exit 1
    fi
    sleep 0.1
  done
done

echo "# 20 visits, spread 4:1:5 over the three containers"
for round in 1 2; do
  for n in 0 0 0 0 1 2 2 2 2 2; do
    curl -fs -o /dev/null "http://127.0.0.1:$((PORT + n))/"
  done
done
# Each file may trail its database by up to a second after the last visit: wait until each one
# agrees with its container's /visits before showing it.
for n in 0 1 2; do
  for _ in $(seq 20); do
    [ "$("$ENGINE" exec "${PODS[$n]}" cat /app/data/visits)" = \
      "$(curl -fs "http://127.0.0.1:$((PORT + n))/visits")" ] && break
    sleep 0.05
  done
done
total=0
for pod in "${PODS[@]}"; do
  run "$ENGINE" exec "$pod" cat /app/data/visits
  total=$((total + $("$ENGINE" exec "$pod" cat /app/data/visits)))
done
echo "# sum of the three files: $total"
echo "# the whole set at a glance, asked of app-python-1"
run curl -s "http://127.0.0.1:$((PORT + 1))/cluster?format=json"
echo
