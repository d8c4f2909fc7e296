"""The whole StatefulSet at a glance: every pod's count, asked of each pod's `/visits`.

Peers come from VISITS_PEERS (base URLs) or from the headless Service's DNS name
(VISITS_PEER_SERVICE): with `publishNotReadyAddresses` it resolves to every pod's address,
ready or not, without Kubernetes API access. Peers are asked in parallel with a short timeout,
only for `/visits` (never `/cluster`: no recursion, and never `/`: nothing counts), and the
answer is kept for a moment, for the whole pod, so a burst of page loads does not become a burst
of peer requests. Which pod is this one comes from POD_NAME and POD_IP, never from the request.
"""

import concurrent.futures
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from counter.process_local import ProcessLocal
from counter.store.files import CLUSTER_CACHE, CLUSTER_LOCK, data_path, file_replace
from counter.store.locks import FileLock
from counter.store.visits import visits_total

PEER_TIMEOUT = 1.0  # per peer, connect and read
ANSWER_WITHIN = 1.3  # the page does not wait longer than this for the slowest peer
CACHE_SECONDS = 2.0
MAX_BODY = 4096


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A peer that answers a redirect gives a bad answer: followed, it could send the fan-out
    to any address this pod reaches (another Service, a cloud's metadata endpoint)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the redirect's status


# Peers answer with their own URL's host, or the Service name, which DJANGO_ALLOWED_HOSTS allows.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)


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


def peers_discover(*, timeout: float) -> list[Peer]:
    """This pod's peers, itself included. Which one is this pod comes from its own settings
    (POD_NAME, POD_IP), never from the request. The Service's DNS lookup gets `timeout` seconds
    (a resolver may otherwise wait far longer)."""
    if settings.VISITS_PEERS:
        peers = []
        for url in settings.VISITS_PEERS:
            parts = urlsplit(url)
            is_self = settings.POD_NAME in (parts.hostname, parts.netloc)
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
    return [Peer(url=f"http://{settings.POD_NAME}", host=settings.POD_NAME, is_self=True)]


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


def pod_count_ask(*, pod: str) -> PodCount:
    """One pod's count, asked by its name under the headless Service (`<pod>.<service>`), or
    of the VISITS_PEERS that answers with that name (local runs, tests)."""
    if settings.VISITS_PEERS:
        for peer in peers_discover(timeout=PEER_TIMEOUT):
            count = _ask(peer)
            if count.pod == pod:
                return count
        return PodCount(pod=pod, visits=None, url="", error="no peer answers with that name")
    service, port = settings.VISITS_PEER_SERVICE, settings.VISITS_PEER_PORT
    return _ask(Peer(url=f"http://{pod}.{service}:{port}", host=service, is_self=False))


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


@dataclass
class _Peers(ProcessLocal):
    pool: concurrent.futures.ThreadPoolExecutor | None = None  # made at first use

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False)


_process = _Peers()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """This process's threads for asking peers (a forked process makes its own)."""
    if _process.pool is None:
        _process.pool = concurrent.futures.ThreadPoolExecutor(16, "cluster-peer")
    return _process.pool


def _counts_ask() -> list[PodCount]:
    """Every pod's count, asked now: discovery and the peers' answers share one deadline."""
    deadline = time.monotonic() + ANSWER_WITHIN
    peers = peers_discover(timeout=ANSWER_WITHIN)
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
    return counts


def _cache_read(path: Path) -> list[PodCount] | None:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not 0 <= time.monotonic() - cached["at"] < CACHE_SECONDS:  # one clock for all processes
        return None
    return [PodCount(**count) for count in cached["counts"]]


def cluster_counts() -> list[PodCount]:
    """Every pod's count, sorted by pod name; unreachable pods carry an error instead.

    One answer per CACHE_SECONDS for the whole pod, whoever asks: it is kept in a file of the
    data directory that every worker reads, and made by one request at a time (a file lock),
    so a burst of page loads, even with a peer that hangs, asks each peer once.
    """
    path = data_path(CLUSTER_CACHE)
    if (counts := _cache_read(path)) is not None:
        return counts
    lock = FileLock(data_path(CLUSTER_LOCK))
    try:
        with lock:
            if (counts := _cache_read(path)) is not None:  # made while this one waited
                return counts
            counts = _counts_ask()
            cached = {"at": time.monotonic(), "counts": [asdict(count) for count in counts]}
            file_replace(path, json.dumps(cached))
            return counts
    finally:
        lock.close()
