import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from counter import peers as peers_module
from counter.models import VisitCounter
from support.servers import StandInHTTP


class Peer:
    """A real HTTP server on 127.0.0.1 standing in for another pod; it records what it is asked."""

    def __init__(self, answer=None, status=200, hang=False, location=None) -> None:
        self.answer = answer
        self.status = status
        self.hang = hang
        self.location = location
        self.release = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.http = StandInHTTP(self._answer)
        self.url = self.http.url

    def _answer(self, path: str, headers) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((path, headers.get("Host")))
        if self.hang:
            self.release.wait(30)
        answer = self.answer
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return self.status, {"Location": self.location} if self.location else {}, body

    def close(self) -> None:
        self.release.set()
        self.http.close()


@pytest.fixture
def peers(settings):
    made: list[Peer] = []

    def make(**kwargs) -> Peer:
        made.append(Peer(**kwargs))
        settings.VISITS_PEERS = [peer.url for peer in made]
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def closed_port_url() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()
    return f"http://127.0.0.1:{port}"


def get_json(client, path="/cluster?format=json"):
    response = client.get(path)
    assert response.status_code == 200
    return response.json()


def test_cluster_sums_every_pod_and_counts_nothing(client, counter, peers):
    peers(answer={"pod": "app-python-1", "visits": 8})
    peers(answer={"pod": "app-python-2", "visits": 10})
    answer = get_json(client)
    assert answer["total"] == 18
    assert [(p["pod"], p["visits"], p["error"]) for p in answer["pods"]] == [
        ("app-python-1", 8, None),
        ("app-python-2", 10, None),
    ]
    assert VisitCounter.objects.get().total == 0


def test_peers_are_asked_only_for_their_visits(client, counter, peers):
    peer = peers(answer={"pod": "app-python-1", "visits": 1})
    get_json(client)
    assert peer.requests == [("/visits?format=json", peer.url.removeprefix("http://"))]


def test_answers_are_cached_for_a_moment(client, counter, peers):
    peer = peers(answer={"pod": "app-python-1", "visits": 1})
    for _ in range(5):
        get_json(client)
    client.get("/cluster")
    assert len(peer.requests) == 1


def test_this_pod_is_counted_from_its_own_database(client, counter, peers, settings):
    settings.POD_NAME = "app-python-0"
    client.get("/")
    client.get("/")
    settings.VISITS_PEERS = ["http://app-python-0:8000"]  # itself, by its name: no HTTP
    answer = get_json(client)
    assert answer == {
        "total": 2,
        "pods": [
            {"pod": "app-python-0", "visits": 2, "url": "http://app-python-0:8000", "error": None}
        ],
    }


def test_without_peers_the_cluster_is_this_pod(client, counter, settings):
    settings.VISITS_PEERS, settings.VISITS_PEER_SERVICE = [], ""
    settings.POD_NAME = "solo"
    client.get("/")
    assert get_json(client)["pods"][0]["pod"] == "solo"
    assert get_json(client)["total"] == 1


@pytest.mark.parametrize(
    ("peer", "error"),
    [
        ({"status": 500, "answer": {"oops": True}}, "bad answer: HTTP 500"),
        ({"answer": b"<html>not json</html>"}, "bad answer: not a /visits JSON document"),
        ({"answer": {"pod": "x", "visits": -1}}, "bad answer: not a /visits JSON document"),
        ({"answer": {"pod": "x", "visits": True}}, "bad answer: not a /visits JSON document"),
        ({"answer": {"pod": "", "visits": 3}}, "bad answer: not a /visits JSON document"),
        ({"answer": [1, 2]}, "bad answer: not a /visits JSON document"),
        ({"answer": b"x" * 10000}, "bad answer: not a /visits JSON document"),
        ({"hang": True}, "timeout"),
    ],
)
def test_a_bad_peer_is_marked_with_the_reason(client, counter, peers, peer, error):
    peers(answer={"pod": "app-python-1", "visits": 4})
    peers(**peer)
    answer = get_json(client)
    assert answer["total"] == 4
    bad = [p for p in answer["pods"] if p["error"]]
    assert [(p["visits"], p["error"]) for p in bad] == [(None, error)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_peer_that_redirects_is_not_followed(client, counter, peers, status):
    """A redirect could send the fan-out to any address the pod reaches (another Service, the
    cloud's metadata endpoint): it is a bad answer, and the address it names is never asked."""
    elsewhere = peers(answer={"pod": "app-python-1", "visits": 4})
    peers(status=status, location=f"{elsewhere.url}/visits?format=json", answer={})
    answer = get_json(client)
    assert [p["error"] for p in answer["pods"] if p["error"]] == [f"bad answer: HTTP {status}"]
    assert answer["total"] == 4  # the peer that answered itself, once
    assert len(elsewhere.requests) == 1


def test_a_stopped_peer_is_refused(client, counter, peers, settings):
    peers(answer={"pod": "app-python-1", "visits": 4})
    gone = closed_port_url()
    settings.VISITS_PEERS = [*settings.VISITS_PEERS, gone]
    answer = get_json(client)
    assert answer["pods"][-1] == {"pod": None, "visits": None, "url": gone, "error": "refused"}


def test_peers_found_through_the_service_name(client, counter, peers, settings):
    peer = peers(answer={"pod": "app-python-1", "visits": 6})
    settings.VISITS_PEERS = []
    settings.VISITS_PEER_SERVICE = "localhost"  # resolves like a headless Service does
    settings.VISITS_PEER_PORT = int(peer.url.rsplit(":", 1)[1])
    answer = get_json(client)
    reached = [p for p in answer["pods"] if p["error"] is None]
    assert reached == [{"pod": "app-python-1", "visits": 6, "url": peer.url, "error": None}]
    assert peer.requests[0][1] == "localhost"  # the Service name as Host


def test_the_pods_own_service_address_is_read_locally(client, counter, settings, monkeypatch):
    settings.VISITS_PEERS = []
    settings.VISITS_PEER_SERVICE = "localhost"
    settings.VISITS_PEER_PORT = int(closed_port_url().rsplit(":", 1)[1])
    settings.POD_IP = "127.0.0.1"
    settings.POD_NAME = "app-python-0"
    client.get("/")
    pods = get_json(client)["pods"]
    assert {"pod": "app-python-0", "visits": 1} in [
        {"pod": p["pod"], "visits": p["visits"]} for p in pods
    ]


def test_the_service_is_looked_up_once_per_cache_window(client, counter, peers, settings,
                                                       monkeypatch):  # fmt: skip
    peer = peers(answer={"pod": "app-python-1", "visits": 6})
    settings.VISITS_PEERS, settings.VISITS_PEER_SERVICE = [], "localhost"
    settings.VISITS_PEER_PORT = int(peer.url.rsplit(":", 1)[1])
    lookups = []
    real_getaddrinfo = peers_module.socket.getaddrinfo

    def counting_getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(peers_module.socket, "getaddrinfo", counting_getaddrinfo)
    for _ in range(3):
        get_json(client)
    assert lookups.count("localhost") == 1


def test_a_hanging_dns_lookup_does_not_hang_the_page(client, counter, settings, monkeypatch):
    """A resolver that never answers (a stand-in: no DNS server of ours can be made to hang the
    machine's resolver here) costs the page the deadline, not the resolver's own timeout."""
    settings.VISITS_PEERS, settings.VISITS_PEER_SERVICE = [], "app-python-headless"
    release = threading.Event()
    monkeypatch.setattr(peers_module.socket, "getaddrinfo", lambda *_, **__: release.wait(30))
    try:
        answer = get_json(client)
    finally:
        release.set()
    assert answer == {
        "total": 0,
        "pods": [
            {"pod": None, "visits": None, "url": "http://app-python-headless:8000",
             "error": "timeout"},
        ],
    }  # fmt: skip


def test_an_unresolvable_service_is_reported(client, counter, settings, monkeypatch):
    settings.VISITS_PEERS = []
    settings.VISITS_PEER_SERVICE = "no-such-service.invalid"
    answer = get_json(client)
    assert answer["pods"] == [
        {
            "pod": None,
            "visits": None,
            "url": "http://no-such-service.invalid:8000",
            "error": "name not resolved",
        }
    ]


def test_html_shows_bars_total_and_escapes_peer_names(client, counter, peers):
    peers(answer={"pod": "<script>alert(1)</script>", "visits": 3})
    peers(hang=True)
    page = client.get("/cluster").content.decode()
    assert '<strong id="total">3</strong>' in page
    assert "1/2" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page
    assert page.count('<g class="pod">') == 2
    assert "unreachable: timeout" in page


def test_cluster_rejects_unknown_formats(client, counter):
    assert client.get("/cluster?format=csv").status_code == 400
