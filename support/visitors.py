"""Two clients visiting the app-python Service while an operation runs (`make e2e`), and what
they saw. They send from this machine through kube-proxy's rules, as any client outside the
pods does, each about 20 times a second; neither ever retries, and a visit waits 2 s at most:

- `new`: a new connection for each visit, so kube-proxy picks a pod for each (a browser's first
  visit, `curl` in a loop, a probe);
- `kept`: kept-alive connections used in turn, as an ingress controller's upstream pool or a
  browser keeps them: at first as many as it takes for every pod to hold one (kube-proxy picks
  a pod for each), so that every pod that stops has a kept-alive connection to close. A
  connection is replaced only once the server closed it: its answer said `Connection: close`,
  or its end was closed before the next visit (seen before sending, as any pool checks). A visit
  sent on a connection that then breaks is a failure.
"""

import http.client
import re
import select
import threading
import time
from dataclasses import dataclass

PAGE = re.compile(r'id="pod">([^<]+)<.*id="total">(\d+)<', re.S)
INTERVAL = 0.05  # seconds between two visits of one client
TIMEOUT = 2.0  # seconds a visit waits for its answer
POOL_MAX = 12  # kept-alive connections opened at most to reach every pod


@dataclass
class Visit:
    client: str  # "new" or "kept"
    sent: float  # time.time()
    pod: str | None = None  # the pod that answered 200, and the total it showed
    total: int | None = None
    error: str | None = None  # why it failed: an exception's name, or "HTTP <status>"


class ServiceVisitors:
    """Both clients, started and stopped together (a `with` block)."""

    def __init__(self, address: str, pods: list[str], port: int = 80) -> None:
        self.address, self.pods, self.port = address, pods, port
        self.visits: list[Visit] = []
        self.closed_by_server = 0  # kept-alive connections closed cleanly, between visits
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._new_connections, daemon=True),
            threading.Thread(target=self._kept_alive, daemon=True),
        ]

    def __enter__(self) -> "ServiceVisitors":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def answered(self, client: str | None = None) -> list[Visit]:
        return [v for v in self.visits if v.error is None and client in (None, v.client)]

    def failed(self, client: str | None = None) -> list[Visit]:
        return [v for v in self.visits if v.error is not None and client in (None, v.client)]

    def summary(self) -> str:
        """One line for a transcript: each client's visits answered and failed."""
        parts = []
        for client, name in (("new", "a new connection each"), ("kept", "kept alive")):
            errors = sorted({v.error for v in self.failed(client)})
            parts.append(
                f"{name}: {len(self.answered(client))} answered 200,"
                f" {len(self.failed(client))} failed{f' {errors}' if errors else ''}"
            )
        closed = (
            f"{self.closed_by_server} kept-alive connections closed by the server between visits"
        )
        return f"the visitors: {'; '.join(parts)}; {closed}"

    def _paced(self, visit_once) -> None:
        while not self._stopping.is_set():
            started = time.time()
            self.visits.append(visit_once(started))
            self._stopping.wait(max(0.0, INTERVAL - (time.time() - started)))

    def _new_connections(self) -> None:
        def once(started: float) -> Visit:
            connection = self._connect()
            try:
                return self._visit(connection, Visit("new", started))[0]
            finally:
                connection.close()

        self._paced(once)

    def _kept_alive(self) -> None:
        pool: list[http.client.HTTPConnection | None] = []
        reached: set[str] = set()
        while reached != set(self.pods) and len(pool) < POOL_MAX:  # a connection to every pod
            connection = self._connect()
            visit, keep = self._visit(connection, Visit("kept", time.time()))
            self.visits.append(visit)
            reached.add(visit.pod)
            pool.append(connection if keep else None)
        turn = 0

        def once(started: float) -> Visit:
            nonlocal turn
            slot, turn = turn, (turn + 1) % len(pool)
            connection = pool[slot]
            if connection is None or _closed_by_peer(connection):
                if connection is not None:
                    connection.close()
                    self.closed_by_server += 1
                connection = pool[slot] = self._connect()
            visit, keep = self._visit(connection, Visit("kept", started))
            if not keep:
                connection.close()
                pool[slot] = None
                if visit.error is None:
                    self.closed_by_server += 1
            return visit

        self._paced(once)
        for connection in pool:
            if connection is not None:
                connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.address, self.port, timeout=TIMEOUT)

    def _visit(self, connection: http.client.HTTPConnection, visit: Visit) -> tuple[Visit, bool]:
        """One GET / on `connection`; and whether the connection may carry the next visit."""
        try:
            connection.request("GET", "/", headers={"Host": "app-python"})
            response = connection.getresponse()
            page = response.read().decode()
        except Exception as error:  # every failure counts, whatever its kind
            visit.error = type(error).__name__
            return visit, False
        if response.status != 200:
            visit.error = f"HTTP {response.status}"
        else:
            pod, total = PAGE.search(page).groups()
            visit.pod, visit.total = pod, int(total)
        return visit, not response.will_close


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection whose server has closed it reads as ready (at its end)."""
    if connection.sock is None:
        return True
    readable, _, _ = select.select([connection.sock], [], [], 0)
    return bool(readable)


def assert_every_visit_counted(visitors: ServiceVisitors, before: dict, after: dict) -> None:
    """Each pod's count grew by at least the visits it answered 200, and holds each total it
    answered; all together by no more than the visits sent (a failed one may have counted)."""
    for pod in before:
        seen = [v.total for v in visitors.answered() if v.pod == pod]
        assert after[pod] - before[pod] >= len(seen), (pod, before[pod], after[pod], len(seen))
        assert all(before[pod] < total <= after[pod] for total in seen), pod
    grown = sum(after.values()) - sum(before.values())
    answered, failed = len(visitors.answered()), len(visitors.failed())
    assert answered <= grown <= answered + failed, (answered, failed, grown)
