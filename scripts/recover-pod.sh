#!/usr/bin/env bash
# Moves a pod of the app-python StatefulSet off a node that is lost for good (docs/kubernetes.md,
# "A lost node"): the runbook's steps in one command, each printed as it runs.
#
#   scripts/recover-pod.sh [-n NAMESPACE] POD [--discard-data]
#
# 1. Refuses while the pod's node still answers: its kubelet must have stopped renewing the
#    node's lease (Ready "Unknown"). A node that answers is drained (kubectl drain), not this.
# 2. With backup on (the pod has the litestream-restore init container): deletes the pod's
#    claim, whose local volume is on the lost node.
# 3. Marks the node out of service (the node.kubernetes.io/out-of-service taint): Kubernetes
#    deletes its pods, and the StatefulSet makes the pod again on another node.
# 4. With backup: waits for the new pod, on a new volume restored from the newest generation of
#    its replica, to be ready, and prints where it runs and the count it restored.
#    Without backup: the count is on the lost node's volume and nowhere else. The pod stays
#    Pending (its volume's node affinity) until the node returns; then remove the taint
#    (printed below). --discard-data deletes the claim anyway: the pod starts over from 0.
set -o errexit -o nounset -o pipefail

namespace=$(kubectl config view --minify -o jsonpath='{..namespace}')
namespace=${namespace:-default}
discard=false
pod=
while (($#)); do
  case $1 in
    -n | --namespace) namespace=$2; shift 2 ;;
    --discard-data) discard=true; shift ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) pod=$1; shift ;;
  esac
done
[[ -n $pod ]] || { echo "usage: $0 [-n NAMESPACE] POD [--discard-data]" >&2; exit 2; }

k() { kubectl -n "$namespace" "$@"; }
step() { printf '+ %s\n' "$*"; "$@"; }
say() { printf '%s\n' "$*"; }

node=$(k get pod "$pod" -o jsonpath='{.spec.nodeName}')
[[ -n $node ]] || { say "$pod is not on a node: nothing to recover" >&2; exit 1; }
claim=$(k get pod "$pod" -o jsonpath='{.spec.volumes[?(@.name=="data")].persistentVolumeClaim.claimName}')
uid=$(k get pod "$pod" -o jsonpath='{.metadata.uid}')
ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
renewed=$(kubectl -n kube-node-lease get lease "$node" -o jsonpath='{.spec.renewTime}')
silent=$(($(date +%s) - $(date -d "$renewed" +%s)))
if [[ $ready != Unknown ]]; then
  say "refusing: $node still answers (Ready=$ready, its lease renewed ${silent} s ago)." >&2
  say "A node that answers keeps running $pod: drain it instead (kubectl drain $node)." >&2
  exit 1
fi
say "$pod ran on $node, which stopped answering ${silent} s ago (Ready=Unknown)"

backup=$(k get pod "$pod" -o jsonpath='{.spec.initContainers[?(@.name=="litestream-restore")].name}')
if [[ -n $backup ]]; then
  say "backup is on: $pod's count comes back from its replica; its claim $claim goes"
  step kubectl -n "$namespace" delete pvc "$claim" --wait=false
elif $discard; then
  say "backup is off and --discard-data given: $pod starts over on a new volume, from 0"
  step kubectl -n "$namespace" delete pvc "$claim" --wait=false
fi

step kubectl taint node "$node" node.kubernetes.io/out-of-service=nodeshutdown:NoExecute --overwrite
say "waiting for Kubernetes to delete $pod from $node"
for _ in $(seq 120); do
  [[ $(k get pod "$pod" -o jsonpath='{.metadata.uid}' 2>/dev/null) != "$uid" ]] && break
  sleep 1
done
[[ $(k get pod "$pod" -o jsonpath='{.metadata.uid}' 2>/dev/null) != "$uid" ]] \
  || { say "$pod is still on $node after 120 s" >&2; exit 1; }

if [[ -z $backup ]] && ! $discard; then
  sleep 5  # the scheduler's verdict on the new pod
  k get pod "$pod" -o wide
  say "$pod waits: $(k get pod "$pod" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')"
  say "Backup is off: $pod's count is on $node's volume and nowhere else. It comes back only"
  say "with $node: when $node is back, run"
  say "  kubectl taint node $node node.kubernetes.io/out-of-service-"
  say "and $pod starts there with its count. To give the count up and start from 0 elsewhere:"
  say "  $0 -n $namespace $pod --discard-data"
  exit 3
fi

say "waiting for $pod to be ready on another node"
step kubectl -n "$namespace" wait pod "$pod" --for=condition=Ready --timeout=300s
k get pod "$pod" -o wide
k get pvc "$claim"
if [[ -n $backup ]]; then
  say "the restore's log (its init container):"
  k logs "$pod" -c litestream-restore | grep -v '^time=' | sed 's/^/  /'
fi
say "$pod counts $(k exec "$pod" -c app -- cat /app/data/visits) visits"
say "When $node is back: kubectl taint node $node node.kubernetes.io/out-of-service-"
