"""The whole StatefulSet at a glance: every pod's count, asked of each pod's `/visits`.

Peers come from VISITS_PEERS (base URLs) or from the headless Service's DNS name
(VISITS_PEER_SERVICE): with `publishNotReadyAddresses` it resolves to every pod's address,
ready or not, without Kubernetes API access. Peers are asked in parallel with a short timeout,
only for `/visits` (never `/cluster`: no recursion, and never `/`: nothing counts), and the
answer is kept for a moment so a burst of page loads does not become a burst of peer requests.
"""

import concurrent.futures
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from counter.visits import visits_total

PEER_TIMEOUT = 1.0  # per peer, connect and read
ANSWER_WITHIN = 1.3  # the page does not wait longer than this for the slowest peer
CACHE_SECONDS = 2.0
MAX_BODY = 4096

# Peers answer with their own URL's host, or the Service name, which DJANGO_ALLOWED_HOSTS allows.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Peer:
    url: str
    host: str  # the Host header to send
    is_self: bool


@dataclass(frozen=True)
class PodCount:
    pod: str | None
    visits: int | None
    url: str
    error: str | None


def peers_discover(*, request_host: str, timeout: float) -> list[Peer]:
    """This pod's peers, itself included. `request_host` is how the client reached this pod;
    the Service's DNS lookup gets `timeout` seconds (a resolver may otherwise wait far longer)."""
    own_names = {settings.POD_NAME, request_host}
    if settings.VISITS_PEERS:
        peers = []
        for url in settings.VISITS_PEERS:
            parts = urlsplit(url)
            is_self = parts.hostname in own_names or parts.netloc in own_names
            peers.append(Peer(url=url.rstrip("/"), host=parts.netloc, is_self=is_self))
        return peers
    if settings.VISITS_PEER_SERVICE:
        service, port = settings.VISITS_PEER_SERVICE, settings.VISITS_PEER_PORT
        lookup = _pool().submit(socket.getaddrinfo, service, port, type=socket.SOCK_STREAM)
        try:
            infos = lookup.result(timeout=timeout)
        except (socket.gaierror, TimeoutError):  # asked anyway: the page says what went wrong
            return [Peer(url=f"http://{service}:{port}", host=service, is_self=False)]
        addresses = sorted({info[4][0] for info in infos})
        return [
            Peer(
                url=f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}",
                host=service,
                is_self=address == settings.POD_IP,
            )
            for address in addresses
        ]
    return [Peer(url=f"http://{request_host}", host=request_host, is_self=True)]


def _ask(peer: Peer) -> PodCount:
    """One peer's /visits as JSON, or why not."""
    request = urllib.request.Request(
        f"{peer.url}/visits?format=json",
        headers={"Accept": "application/json", "Host": peer.host},
    )
    try:
        with _opener.open(request, timeout=PEER_TIMEOUT) as response:
            body = response.read(MAX_BODY + 1)
    except urllib.error.HTTPError as error:
        return _failed(peer, f"bad answer: HTTP {error.code}")
    except urllib.error.URLError as error:
        return _failed(peer, _reason(error.reason))
    except OSError as error:  # a timeout or reset while reading the body
        return _failed(peer, _reason(error))
    try:
        answer = json.loads(body) if len(body) <= MAX_BODY else None
        pod, visits = answer["pod"], answer["visits"]
        if not (isinstance(pod, str) and 0 < len(pod) <= 253):
            raise ValueError("pod")
        if not (isinstance(visits, int) and not isinstance(visits, bool) and visits >= 0):
            raise ValueError("visits")
    except (ValueError, TypeError, KeyError):
        return _failed(peer, "bad answer: not a /visits JSON document")
    return PodCount(pod=pod, visits=visits, url=peer.url, error=None)


def _reason(error: object) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, socket.gaierror):
        return "name not resolved"
    return f"unreachable: {error}"[:120]


def _failed(peer: Peer, error: str) -> PodCount:
    return PodCount(pod=_name_of(peer), visits=None, url=peer.url, error=error)


def _name_of(peer: Peer) -> str | None:
    """The pod name of a Service address that did not answer, from reverse DNS: a StatefulSet
    pod is registered as <pod>.<governing service>.<namespace>.svc..."""
    service = settings.VISITS_PEER_SERVICE
    if settings.VISITS_PEERS or not service:
        return None
    try:
        labels = socket.gethostbyaddr(urlsplit(peer.url).hostname or "")[0].split(".")
    except OSError:
        return None
    return labels[0] if len(labels) > 1 and labels[1] == service else None


_executor: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_cache: tuple[float, str, list[PodCount]] | None = None  # (when, request host, counts)
_cache_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    if _executor is None or _executor[0] != os.getpid():  # threads do not survive a fork
        _executor = (os.getpid(), concurrent.futures.ThreadPoolExecutor(16, "cluster-peer"))
    return _executor[1]


def cluster_counts(*, request_host: str) -> list[PodCount]:
    """Every pod's count, sorted by pod name; unreachable pods carry an error instead.

    Discovery and the peers' answers share one deadline, and both are cached together.
    """
    global _cache
    with _cache_lock:
        now = time.monotonic()
        if _cache and _cache[1] == request_host and now - _cache[0] < CACHE_SECONDS:
            return _cache[2]
        deadline = now + ANSWER_WITHIN
        peers = peers_discover(request_host=request_host, timeout=ANSWER_WITHIN)
        futures = {_pool().submit(_ask, peer): peer for peer in peers if not peer.is_self}
        done, _ = concurrent.futures.wait(futures, timeout=max(0, deadline - time.monotonic()))
        counts = [  # no reverse DNS for a peer that timed out: it could outlast the deadline
            future.result()
            if future in done
            else PodCount(pod=None, visits=None, url=peer.url, error="timeout")
            for future, peer in futures.items()
        ]
        counts += [
            PodCount(pod=settings.POD_NAME, visits=visits_total(), url=peer.url, error=None)
            for peer in peers
            if peer.is_self
        ]
        counts.sort(key=lambda count: (count.pod is None, count.pod or "", count.url))
        _cache = (time.monotonic(), request_host, counts)
        return counts
