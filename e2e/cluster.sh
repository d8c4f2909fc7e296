#!/usr/bin/env bash
# A real Kubernetes of several nodes on this machine, built from upstream sources (Go modules)
# and run as plain processes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# one kube-proxy; per node a kubelet and its own containerd + runc with a bridge CNI, in the
# node's own cgroups (so freezing them stops the whole node: kubelet, runtime, every container);
# CoreDNS in the cluster, and a NetworkPolicy agent that enforces policies (kube-network-policies).
# Nothing is pulled: the pause, CoreDNS, agent and app images are built here and imported.
#
#   e2e/cluster.sh build   compile the binaries into .cluster/bin (Go caches are reused)
#   e2e/cluster.sh up      build, start everything from a clean state, write .cluster/kubeconfig;
#                          NODES=N nodes (3 by default, 1 for a quick run)
#   e2e/cluster.sh load IMAGE   import a podman image into every node's containerd
#   e2e/cluster.sh nodes   the node names, one a line
#   e2e/cluster.sh freeze NODE | thaw NODE   stop every process of NODE at once, as a machine
#                          that loses power would, or let it go on where it stopped
#   e2e/cluster.sh down    stop what `up` started (frozen nodes too), unmount, remove its
#                          network, cgroups and rules; every step runs even when one fails, and
#                          the failures are listed at the end
#   e2e/cluster.sh dns-check IMAGE   a pod of IMAGE resolves a Service through CoreDNS
#
# Needs root. It touches only what it made: processes by the PIDs it recorded, the shims serving
# its own containerd sockets, the iptables chains that were not there before `up` (KUBE-*, CNI-*,
# APP-PYTHON-*), everything
# under .cluster/, /var/lib/app-python-cluster and /run/app-python-cluster, the cgroups
# app-python-node-N, its network namespaces, the addresses 10.250.0.1 and 10.250.0.1N on lo and
# the bridges cniN.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$ROOT/e2e/go.mod")  # one source: go.mod
# shellcheck source=scripts/versions.env
source "$ROOT/scripts/versions.env"  # COREDNS_VERSION (KUBE_NETWORK_POLICIES_VERSION: go-tool.sh)
CONFIG=$ROOT/e2e/config     # the configuration files `up` fills in and applies
DIR=$ROOT/.cluster
BIN=$DIR/bin
PKI=$DIR/pki
LOGS=$DIR/logs
PIDS=$DIR/pids
VAR=/var/lib/app-python-cluster
RUN=/run/app-python-cluster
API_IP=10.250.0.1           # an extra address on lo: local, never leaves this machine
NODES=${NODES:-3}
POD_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
# shellcheck disable=SC2034  # read through ${DNS_IP} in e2e/config (kubelet, CoreDNS)
DNS_IP=10.96.0.10
# PersistentVolumes per node (a pod's volume can only be on its node): data-app-python-0..2 in
# two namespaces (kustomize, Helm), 3 for the OrderedReady copy, 6 for the backup test (one
# pod, its volume lost five times), 3 for the perimeter's (one lost once), one spare, in case
# every pod lands on one node.
PV_COUNT=18
# The node that is never drained or lost: CoreDNS runs there.
# shellcheck disable=SC2034  # read through ${DNS_NODE} in e2e/config/coredns.yaml
DNS_NODE=node-1
export PATH=$BIN:/usr/sbin:/sbin:$PATH
export KUBECONFIG=$DIR/kubeconfig

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*"; }
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

node_is() {  # node_is N: the variables of node N (node-N), for the functions and e2e/config
  NODE=node-$1
  NODE_IP=10.250.0.$((10 + $1))  # on lo, like API_IP
  NODE_DIR=$DIR/$NODE            # its kubeconfig and configuration files
  NODE_VAR=$VAR/$NODE            # its kubelet's and containerd's state, its volumes
  NODE_RUN=$RUN/$NODE
  CONTAINERD_SOCK=$NODE_RUN/containerd.sock
  BRIDGE=cni$1
  POD_SUBNET=10.244.$1.0/24
  CGROUP=app-python-$NODE        # under every cgroup hierarchy; the kubelet's cgroupRoot
}

node_numbers() {  # the nodes `up` started (recorded), else NODES
  if [[ -f $DIR/nodes ]]; then sed 's/^node-//' "$DIR/nodes"; else seq "$NODES"; fi
}

node_number() {  # node_number NAME: N of a running cluster's node-N, or fail saying which exist
  local n
  for n in $(node_numbers); do [[ $1 == "node-$n" ]] && { echo "$n"; return; }; done
  echo "no node '$1' in this cluster; its nodes: $(node_numbers | sed 's/^/node-/' | xargs)" >&2
  return 1
}

config() {  # config FILE: e2e/config/FILE, each ${NAME} in it replaced by this script's $NAME
  local text name
  text=$(<"$CONFIG/$1")
  # shellcheck disable=SC2016  # a literal ${NAME}
  for name in $(grep -o '\${[A-Z_][A-Z0-9_]*}' <<<"$text" | sort -u | tr -d '${}'); do
    [[ -v $name ]] || { log "e2e/config/$1 names \${$name}, which this script does not set" >&2; return 1; }
    text=${text//"\${$name}"/"${!name}"}
  done
  printf '%s\n' "$text"
}

build() {
  # Built binaries are kept outside the clone too, so a later run on this machine (CI's fresh
  # clone) copies them instead of linking again; Go's own caches make a rebuild quick anyway.
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/app-python/cluster-$K8S_VERSION-$COREDNS_VERSION
  mkdir -p "$BIN" "$cache"
  cp -n "$cache"/* "$BIN/" 2>/dev/null || true
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  local minor=${K8S_VERSION#v1.}
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  local kube=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm kubectl)
  local missing=()
  for name in "${kube[@]}"; do [[ -x $BIN/$name ]] || missing+=("k8s.io/kubernetes/cmd/$name"); done
  if ((${#missing[@]})); then
    log "building ${#missing[@]} Kubernetes $K8S_VERSION commands (the first time: minutes)"
    (cd "$ROOT/e2e" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN/" "${missing[@]}")
  fi
  [[ -x $BIN/etcd ]] || (cd "$ROOT/e2e/etcd" && log "building etcd" &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  [[ -x $BIN/coredns ]] || { log "building CoreDNS $COREDNS_VERSION" &&
    CGO_ENABLED=0 GOBIN=$BIN go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"; }
  [[ -x $BIN/pause ]] || (cd "$ROOT/e2e" &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/pause" ./pause)
  cp -u "$BIN"/* "$cache/"
  NETWORK_POLICIES=$(bash "$ROOT/scripts/go-tool.sh" kube-network-policies)  # cached on its own
  log "binaries in $BIN: $("$BIN/kube-apiserver" --version)"
}

packages() {
  local needed=()
  for tool in containerd runc iptables conntrack podman curl; do
    command -v "$tool" >/dev/null || needed+=("$tool")
  done
  [[ -x /usr/lib/cni/bridge ]] || needed+=(containernetworking-plugins)
  if ((${#needed[@]})); then
    log "installing ${needed[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
  fi
}

start() {  # start NAME COMMAND...: in the background, PID kept for `down`
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

cgroups() {  # the node's cgroup in every hierarchy (v1 controllers, the named and unified ones)
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    mountpoint -q "$hierarchy" && echo "${hierarchy}$CGROUP"
  done
}

cgroups_make() {
  local group
  for group in $(cgroups); do
    mkdir -p "$group"
    if [[ -f $group/cpuset.cpus ]]; then  # a new cpuset has no CPUs until given its parent's
      cat "${group%/*}/cpuset.cpus" >"$group/cpuset.cpus"
      cat "${group%/*}/cpuset.mems" >"$group/cpuset.mems"
    fi
  done
}

start_on_node() {  # start_on_node NAME COMMAND...: started inside the node's cgroups, so its
  # children (containerd's shims, the containers) are too, and freezing the node stops them all
  local name=$1 groups; shift
  mapfile -t groups < <(cgroups)
  # shellcheck disable=SC2016  # expanded by the inner bash
  start "$name-$NODE" bash -c 'for procs in "$@"; do echo $$ >"$procs/cgroup.procs"; done; exec '"$(printf '%q ' "$@")" \
    - "${groups[@]}"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for ((i = 0; i < seconds * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  log "gave up waiting for $what; logs are in $LOGS"
  return 1
}

pki() {
  [[ -f $PKI/ca.crt ]] && return
  node_is 1
  config kubeadm.yaml >"$DIR/kubeadm.yaml"
  kubeadm init phase certs all --config "$DIR/kubeadm.yaml" >/dev/null
  kubeadm init phase kubeconfig all --config "$DIR/kubeadm.yaml" --kubeconfig-dir "$DIR" >/dev/null
}

images() {  # the nodes' images, built with podman from binaries made here
  local context
  context=$(mktemp -d)
  cp "$BIN/pause" "$BIN/coredns" "$NETWORK_POLICIES" "$context/"
  podman build -q -f "$CONFIG/pause.Containerfile" -t localhost/pause:local "$context" >/dev/null
  podman build -q -f "$CONFIG/coredns.Containerfile" -t localhost/coredns:local "$context" >/dev/null
  podman build -q -f "$CONFIG/network-policies.Containerfile" \
    -t localhost/kube-network-policies:local "$context" >/dev/null
  rm -rf "$context"
}

load_into_node() {  # load_into_node IMAGE: podman's copy into this node's containerd, also
  # under docker.io/library/
  local image=$1 archive stored short=${1#localhost/}
  archive=$(mktemp)
  podman save -q --format oci-archive -o "$archive" "$image" >/dev/null
  ctr_ images import --no-unpack=false "$archive" >/dev/null
  rm -f "$archive"
  # The imported name, not the docker.io/library/ alias an earlier load of the same tag made.
  stored=$(ctr_ images ls -q | grep -E "(^|/)$short$" | grep -v "^docker.io/library/" | head -n 1)
  [[ $short == */* ]] || ctr_ images tag --force "$stored" "docker.io/library/$short" >/dev/null
}

load() {  # load IMAGE: into every node
  local n
  for n in $(node_numbers); do
    node_is "$n"
    load_into_node "$1"
  done
  log "loaded $1 into $(node_numbers | sed 's/^/node-/' | xargs)"
}

up() {
  packages
  build
  if leftovers; then  # never resume an earlier run's etcd, pods and network
    log "an earlier run left state behind: stopping it first"
    down || { log "cannot start from a clean state; see the failed steps above"; return 1; }
  fi
  mkdir -p "$LOGS" "$PIDS" "$VAR" "$RUN"
  seq "$NODES" | sed 's/^/node-/' >"$DIR/nodes"
  snapshot
  ip addr show dev lo | grep -q " $API_IP/" || ip addr add "$API_IP/32" dev lo
  sysctl -qw net.ipv4.ip_forward=1
  # Every kubelet and containerd watches files: the default 128 inotify instances run out.
  (($(sysctl -n fs.inotify.max_user_instances) >= 1024)) || sysctl -qw fs.inotify.max_user_instances=1024
  pki
  # admin.conf relies on a binding that only `kubeadm init` creates; super-admin is system:masters.
  cp "$DIR/super-admin.conf" "$DIR/kubeconfig"

  control_plane
  images
  local n
  for n in $(node_numbers); do
    node_is "$n"
    node_up
  done
  node_is 1
  start kube-proxy kube-proxy --kubeconfig "$DIR/super-admin.conf" --hostname-override "$NODE" \
    --cluster-cidr "$POD_CIDR" --proxy-mode iptables --masquerade-all \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
  for n in $(node_numbers); do
    wait_for 120 "node-$n to be Ready" kubectl wait --for=condition=Ready "node/node-$n" --timeout=1s
  done
  # What `kubeadm init` would bind: the API server's client identity may use the kubelet API
  # (exec, logs, port-forward).
  kubectl create clusterrolebinding apiserver-kubelet-client --clusterrole system:kubelet-api-admin \
    --user kube-apiserver-kubelet-client --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  addons
  log "ready: export KUBECONFIG=$DIR/kubeconfig; kubectl get nodes"
  kubectl get nodes -o wide
}

control_plane() {  # etcd, kube-apiserver (waited for), kube-controller-manager, kube-scheduler
  log "etcd, kube-apiserver"
  start etcd etcd --data-dir "$VAR/etcd" --name etcd \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "etcd=http://127.0.0.1:2380"
  start kube-apiserver kube-apiserver --etcd-servers http://127.0.0.1:2379 \
    --advertise-address "$API_IP" --bind-address "$API_IP" --secure-port 6443 \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra-
  wait_for 60 "the API server" kubectl get --raw /readyz

  log "kube-controller-manager, kube-scheduler"
  start kube-controller-manager kube-controller-manager \
    --kubeconfig "$DIR/controller-manager.conf" \
    --authentication-kubeconfig "$DIR/controller-manager.conf" \
    --authorization-kubeconfig "$DIR/controller-manager.conf" --leader-elect=false \
    --bind-address 127.0.0.1 --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --controllers '*,bootstrapsigner,tokencleaner'
  start kube-scheduler kube-scheduler --kubeconfig "$DIR/scheduler.conf" \
    --authentication-kubeconfig "$DIR/scheduler.conf" \
    --authorization-kubeconfig "$DIR/scheduler.conf" --leader-elect=false --bind-address 127.0.0.1
}

node_up() {  # the node's address, cgroups, containerd (with its images) and kubelet
  log "$NODE: containerd (runc, cgroupfs, bridge $BRIDGE, $POD_SUBNET), kubelet"
  mkdir -p "$NODE_DIR/cni" "$NODE_VAR/pv" "$NODE_RUN"
  ip addr show dev lo | grep -q " $NODE_IP/" || ip addr add "$NODE_IP/32" dev lo
  cgroups_make
  config 10-bridge.conflist >"$NODE_DIR/cni/10-bridge.conflist"
  config containerd.toml >"$NODE_DIR/containerd.toml"
  start_on_node containerd containerd --config "$NODE_DIR/containerd.toml"
  wait_for 30 "$NODE's containerd" ctr_ version
  load_into_node localhost/pause:local
  load_into_node localhost/coredns:local
  load_into_node localhost/kube-network-policies:local
  # The node's own client identity (system:node:node-N): NodeRestriction holds each kubelet to
  # its own node and pods.
  config kubeadm.yaml >"$NODE_DIR/kubeadm.yaml"
  kubeadm init phase kubeconfig kubelet --config "$NODE_DIR/kubeadm.yaml" \
    --kubeconfig-dir "$NODE_DIR" >/dev/null
  config kubelet.yaml >"$NODE_DIR/kubelet.yaml"
  start_on_node kubelet kubelet --config "$NODE_DIR/kubelet.yaml" \
    --kubeconfig "$NODE_DIR/kubelet.conf" --root-dir "$NODE_VAR/kubelet" \
    --hostname-override "$NODE" --node-ip "$NODE_IP"
}

addons() {  # the NetworkPolicy agent, CoreDNS and the PersistentVolumes
  log "NetworkPolicy agent, CoreDNS, storage"
  network_policies
  config coredns.yaml | kubectl apply -f - >/dev/null
  storage | kubectl apply -f - >/dev/null
  # The e2e's pods meet Pod Security's restricted profile, or admission refuses them: here the
  # default namespace (test_e2e.py's); support/cluster.py labels the tests' own.
  kubectl label namespace default pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/enforce-version=latest --overwrite >/dev/null
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
}

network_policies() {  # kube-network-policies, then the packets it judges
  config network-policies.yaml | kubectl apply -f - >/dev/null
  kubectl -n kube-system rollout status deployment/kube-network-policies --timeout=120s >/dev/null
  network_policies_queue
}

network_policies_queue() {
  # The agent puts the first packet of every pod connection through an NFQUEUE with nftables'
  # `queue` statement, in a table of its own. A kernel built without it (CONFIG_NFT_QUEUE
  # unset) refuses the rule ("No such file or directory") and with it the agent's whole table;
  # iptables' NFQUEUE target then does the same: the agent's rules, in mangle's POSTROUTING
  # (after kube-proxy's DNAT, before any SNAT, so both pod addresses are the real ones), for
  # every pod address. Without --queue-bypass: while the agent does not answer, new pod
  # connections wait, never pass unjudged. Root's own packets (the kubelet's probes, these
  # tests) pass, as the agent lets them.
  local chain=APP-PYTHON-NETWORK-POLICIES rule
  sleep 2  # the agent's first sync, right after its start
  if nft list table inet kube-network-policies >/dev/null 2>&1; then
    log "NetworkPolicy agent: its own nftables rules"
    return
  fi
  log "NetworkPolicy agent: this kernel has no nftables queue; its rules made with iptables"
  iptables -t mangle -N "$chain" 2>/dev/null || iptables -t mangle -F "$chain"
  iptables -t mangle -A "$chain" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables -t mangle -A "$chain" -m owner --uid-owner 0 -j RETURN
  for rule in "-s $POD_CIDR" "-d $POD_CIDR"; do
    # shellcheck disable=SC2086  # two words each
    iptables -t mangle -A "$chain" $rule -j NFQUEUE --queue-num 100
  done
  iptables -t mangle -C POSTROUTING -j "$chain" 2>/dev/null || iptables -t mangle -A POSTROUTING -j "$chain"
}

storage() {  # a default StorageClass with static hostPath PersistentVolumes on every node
  cat "$CONFIG/storageclass.yaml"
  local n i PV
  for n in $(node_numbers); do
    node_is "$n"
    for ((i = 0; i < PV_COUNT; i++)); do
      PV=$NODE-pv$i
      # hostPath ignores fsGroup: the directory is made writable for the app's group here.
      install -d -o 0 -g 10001 -m 2775 "$NODE_VAR/pv/$PV"
      echo ---
      config persistentvolume.yaml
    done
  done
}

stop() {  # stop NAME [COMMAND]: by the PID `up` recorded, if that process still runs COMMAND
  local pidfile=$PIDS/$1.pid command=${2:-$1}
  [[ -f $pidfile ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  if grep -qa -- "$command" "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null; then
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "$1 (pid $pid) did not stop"; return 1; fi
  fi
  rm -f "$pidfile"
}

try() {  # try COMMAND...: run a step of `down`; a failure is noted and the next step runs
  "$@" || failed+=("$*")
}

chains() {  # "TOOL TABLE CHAIN" for every KUBE-* and CNI-* chain there is now
  local tool table
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      "$tool" -t "$table" -S 2>/dev/null | awk -v at="$tool $table" '/^-N (KUBE|CNI|APP-PYTHON)-/{print at, $2}'
    done
  done
}

netns_list() { ip netns list 2>/dev/null | awk '/^cni-/{print $1}'; }

snapshot() {  # what was already there before `up`: never ours to remove
  chains >"$DIR/chains.before"
  netns_list >"$DIR/netns.before"
}

purge_chains() {  # the KUBE-*/CNI-*/APP-PYTHON-* chains that appeared since `up` (kube-proxy's,
  # CNI's, the NetworkPolicy queue's), and jumps to them
  [[ -f $DIR/chains.before ]] || return 0
  local ours tool table chain rule status=0
  ours=$(chains | grep -vxF -f "$DIR/chains.before" || true)
  [[ -n $ours ]] || return 0
  while read -r tool table chain; do  # first every rule that jumps to one of them
    "$tool" -t "$table" -S 2>/dev/null | grep -E -- "-j $chain( |$)" | sed 's/^-A/-D/' |
      while read -r rule; do eval "$tool" -t "$table" "$rule" || true; done
  done <<<"$ours"
  while read -r tool table chain; do "$tool" -t "$table" -F "$chain" || status=1; done <<<"$ours"
  while read -r tool table chain; do "$tool" -t "$table" -X "$chain" || status=1; done <<<"$ours"
  return $status
}

remove_netns() {  # the pods' network namespaces: made since `up`
  [[ -f $DIR/netns.before ]] || return 0
  local ns status=0
  for ns in $(netns_list | grep -vxF -f "$DIR/netns.before" || true); do
    # `ip netns delete` fails with "Device or resource busy" while anything still holds the
    # namespace's mount: detach it lazily, then remove the file.
    umount -l "/run/netns/$ns" 2>/dev/null || true
    rm -f "/run/netns/$ns" || status=1
  done
  return $status
}

kill_containers() {  # the pods' containers, while containerd still answers
  [[ -S $CONTAINERD_SOCK ]] || return 0
  local task
  for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$task" 2>/dev/null || true; done
}

kill_shims() {  # the shims of this cluster's containerd: they name its socket, which is ours
  local pid
  for pid in $(pgrep -f -- "-address $CONTAINERD_SOCK\b" || true); do kill -9 "$pid" 2>/dev/null; done
  return 0
}

unmount_ours() {
  local status=0 target
  for target in $({ grep -E " ($VAR|$RUN)" /proc/mounts || true; } | awk '{print $2}' | sort -r); do
    umount -l "$target" || status=1
  done
  return $status
}

leftovers() {  # anything of an earlier run still here
  [[ -e $VAR || -e $RUN || -f $DIR/nodes ]] || compgen -G "$PIDS/*.pid" >/dev/null
}

freezer() { echo "/sys/fs/cgroup/freezer/$CGROUP/freezer.state"; }

freeze() {  # freeze NODE: every process of the node stops where it is, at once
  node_is "$(node_number "$1")"
  echo FROZEN >"$(freezer)"
  wait_for 10 "$NODE to freeze" grep -qx FROZEN "$(freezer)"
  log "$NODE frozen: its kubelet, containerd, shims and containers run no instruction until thawed"
}

thaw() {
  node_is "$(node_number "$1")"
  echo THAWED >"$(freezer)"
  log "$NODE thawed"
}

node_down() {  # the node's kubelet, containers, containerd, shims, cgroups, bridge and address
  # A frozen process cannot die: thaw the node first.
  [[ -f $(freezer) ]] && try thaw "$NODE"
  try stop "kubelet-$NODE" kubelet
  try kill_containers
  try stop "containerd-$NODE" containerd
  try kill_shims
  try remove_cgroups
  if ip link show "$BRIDGE" >/dev/null 2>&1; then try ip link delete "$BRIDGE"; fi
  if ip addr show dev lo | grep -q " $NODE_IP/"; then try ip addr del "$NODE_IP/32" dev lo; fi
}

remove_cgroups() {  # the node's cgroups, deepest first, once nothing runs in them
  local group status=0
  for group in $(cgroups); do
    [[ -d $group ]] || continue
    find "$group" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d $group ]] || { log "cgroup $group is still in use"; status=1; }
  done
  return $status
}

down() {
  log "stopping the cluster"
  failed=()
  try stop kube-proxy
  local n
  for n in $(node_numbers); do
    node_is "$n"
    node_down
  done
  try stop kube-scheduler
  try stop kube-controller-manager
  try stop kube-apiserver
  try stop etcd
  try purge_chains
  try unmount_ours
  try remove_netns
  if ip addr show dev lo | grep -q " $API_IP/"; then try ip addr del "$API_IP/32" dev lo; fi
  try rm -rf "$VAR" "$RUN" /var/lib/cni/networks/app-python-node-*
  if ((${#failed[@]})); then
    log "stopped, but these steps failed: $(printf '[%s] ' "${failed[@]}")"
    return 1
  fi
  rm -f "$DIR/chains.before" "$DIR/netns.before" "$DIR/nodes"
  log "stopped"
}

dns_check() {  # dns-check IMAGE: a new pod resolves the API server's Service through CoreDNS
  local image=$1 address
  kubectl delete pod dns-check --ignore-not-found --wait=true >/dev/null
  # Restricted, as Pod Security admission asks in the default namespace (addons).
  local restricted='{"spec": {"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "dns-check", "securityContext": {"allowPrivilegeEscalation": false,
    "capabilities": {"drop": ["ALL"]}}}]}}'
  kubectl run dns-check --image="$image" --image-pull-policy=IfNotPresent --restart=Never \
    --override-type=strategic --overrides="$restricted" \
    --command -- python -c 'import socket; print(socket.gethostbyname("kubernetes.default.svc.cluster.local"))' >/dev/null
  kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/dns-check --timeout=120s >/dev/null
  address=$(kubectl logs dns-check)
  kubectl delete pod dns-check --wait=false >/dev/null
  [[ $address == "$(kubectl get service kubernetes -o jsonpath='{.spec.clusterIP}')" ]] ||
    { log "dns-check: kubernetes.default resolved to '$address'"; return 1; }
  log "dns-check: a new pod resolved kubernetes.default.svc.cluster.local to $address"
}

case ${1:-} in
  build) build ;;
  up) up ;;
  load) load "${2:?usage: e2e/cluster.sh load IMAGE}" ;;
  nodes) node_numbers | sed 's/^/node-/' ;;
  freeze) freeze "${2:?usage: e2e/cluster.sh freeze NODE}" ;;
  thaw) thaw "${2:?usage: e2e/cluster.sh thaw NODE}" ;;
  down) down ;;
  dns-check) dns_check "${2:?usage: e2e/cluster.sh dns-check IMAGE}" ;;
  *) echo "usage: e2e/cluster.sh build|up|load IMAGE|nodes|freeze NODE|thaw NODE|down|dns-check IMAGE" >&2
     exit 2 ;;
esac
