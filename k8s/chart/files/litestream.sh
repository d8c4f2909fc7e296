#!/bin/sh
# The backup's roles (the chart's litestream ConfigMap; `sh litestream.sh ROLE`):
#   restore      the init container: choose this volume's replica generation, and on a volume
#                without a database restore it from the newest generation of the pod's replica
#   replicate    the sidecar: stream the database's changes into this volume's generation
#   copy OUTPUT  the backup verification's CronJob: restore the newest generation of
#                $POD_NAME's replica into OUTPUT
#
# Why generations: each volume writes to a replica of its own, <path>/<pod>/<N>. A pod restored
# onto a new volume (its node lost) takes generation N+1 and writes nothing into N. When the old
# node comes back, its stale pod and sidecar, which still believe they own the database, can
# only write into N: the replica the recovered pod restores from next time stays its own.
# Litestream itself cannot fence them: a running sidecar writes from the position it remembers,
# without reading what another one wrote there since.
set -eu
# The pod's paths (tests/test_replica_generations.py runs this script outside a pod).
config=${LITESTREAM_CONFIG:-/etc/litestream/litestream.yml}
data=${DATA_DIR:-/app/data}
db=$data/db.sqlite3
record=$data/replica-generation  # this volume's generation, kept on the volume

# Litestream's configuration names the replica <path>/${POD_NAME}${REPLICA_GENERATION}: "/N"
# for generation N, "" for the one path per pod of chart 1.0.0 (read, never written).
holds() {  # holds N: generation N of this pod's replica has LTX files (a listing error stops all)
  listing=$(REPLICA_GENERATION=${1:+/$1} litestream ltx -config "$config" -level all "$db" 2>&1) || {
    printf 'cannot list generation %s of %s'"'"'s replica:\n%s\n' "$1" "$POD_NAME" "$listing" >&2
    exit 1
  }
  printf '%s\n' "$listing" | grep -q '^[0-9]'
}

newest() {  # the newest generation of $POD_NAME's replica, 0 for none
  n=0
  while holds $((n + 1)); do n=$((n + 1)); done
  echo "$n"
}

restore() {
  if [ -f "$record" ]; then
    echo "this volume replicates to generation $(cat "$record"); nothing to restore"
    return
  fi
  newest=$(newest) || exit 1
  generation=$((newest + 1))
  if [ -f "$db" ]; then
    echo "a database without a generation (backup newly turned on, or chart 1.0.0's):" \
      "generation $generation"
  elif [ "$newest" -gt 0 ]; then
    echo "restoring $POD_NAME from generation $newest of its replica"
    REPLICA_GENERATION=/$newest litestream restore -config "$config" "$db"
  elif holds ""; then
    echo "restoring $POD_NAME from its replica of chart 1.0.0 (one path per pod)"
    REPLICA_GENERATION="" litestream restore -config "$config" "$db"
  else
    echo "no replica of $POD_NAME yet: the app creates a new database; generation $generation"
  fi
  if [ -f "$db" ]; then  # claim the generation before the app starts: it holds the database now
    REPLICA_GENERATION=/$generation litestream replicate -config "$config" -once -force-snapshot
  fi
  echo "$generation" > "$record.new"
  mv -f "$record.new" "$record"
  echo "this volume replicates to generation $generation"
}

copy() {
  newest=$(newest) || exit 1
  if [ "$newest" -gt 0 ]; then
    echo "$POD_NAME: generation $newest of its replica"
    REPLICA_GENERATION=/$newest litestream restore -config "$config" -o "$1" "$db"
  else
    echo "$POD_NAME: no generation; its replica of chart 1.0.0, if any"
    REPLICA_GENERATION="" litestream restore -config "$config" -o "$1" "$db"
  fi
}

replicate() {
  generation=$(cat "$record")  # written by the init container; none: stop here, loudly
  export REPLICA_GENERATION="/$generation"
  # Not exec'd: once Litestream's final sync is done (the pod stops: SIGTERM, forwarded), the
  # pod's last log line says whether the replica holds the database's last transaction.
  litestream replicate -config "$config" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
  status=0
  wait "$pid" || status=$?
  if kill -0 "$pid" 2>/dev/null; then  # the signal interrupted the wait: Litestream stops now
    status=0
    wait "$pid" || status=$?
  fi
  position
  exit "$status"
}

position() {  # the replica's newest TXID against the database's last one Litestream read
  last=$(litestream status -config "$config" -json "$db" 2>&1 |
    sed -n 's/.*"local_txid": *"\([0-9a-f]*\)".*/\1/p')
  shipped=$(litestream ltx -config "$config" -level all "$db" 2>&1 |
    awk '$1 ~ /^[0-9]+$/ {print $3}' | sort | tail -n 1)
  if [ -n "$last" ] && [ "$last" = "$shipped" ]; then
    echo "final sync: the replica holds the database's last transaction, TXID $last"
  else
    echo "final sync: the replica's newest transaction is TXID ${shipped:-none}, the" \
      "database's last is TXID ${last:-unknown}: what lies between is on this volume only" \
      "until the pod's next start ships it" >&2
  fi
}

"$@"
