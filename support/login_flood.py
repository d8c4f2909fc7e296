"""A password-guessing flood on /admin/login/ of a running server, with /healthz probed
meanwhile the way the kubelet does (a new connection each time, 2 s timeout).

    login_flood("http://127.0.0.1:8000", loops=30, seconds=10) -> dict

`loops` clients post wrong passwords back to back. With `new_usernames` every try uses a new
username (Django hashes the password for unknown users too); with `spoofed_addresses` every
try also claims a new client address in X-Forwarded-For, which the server only believes with
VISITS_TRUSTED_PROXY_HOPS=1: the many-address attack, where no lockout applies and only the
cap on concurrent password checks protects the server.
"""

import http.client
import statistics
import threading
import time
import urllib.parse
from collections import Counter

PROBE_TIMEOUT = 2.0
PROBE_INTERVAL = 0.1


def _connect(base_url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


def _csrf_token(connection: http.client.HTTPConnection) -> str:
    connection.request("GET", "/admin/login/")
    response = connection.getresponse()
    response.read()
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        if name.strip() == "csrftoken":
            return rest.split(";", 1)[0]
    raise RuntimeError(f"GET /admin/login/ set no csrftoken cookie ({response.status})")


def _guess_loop(
    base_url: str,
    number: int,
    token: str,
    deadline: float,
    statuses: Counter,
    retry_after: dict[str, set[str]],
    lock: threading.Lock,
    *,
    new_usernames: bool,
    spoofed_addresses: bool,
) -> None:
    connection = None
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        username = f"guess-{number}-{tries}" if new_usernames else "admin"
        body = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": username, "password": f"no-{tries}"}
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={token}",
        }
        if spoofed_addresses:
            headers["X-Forwarded-For"] = f"10.{number}.{tries // 250 % 250}.{tries % 250}"
        try:
            if connection is None:
                connection = _connect(base_url, timeout=30)
            connection.request("POST", "/admin/login/", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            key = str(response.status)
            wait = response.getheader("Retry-After")
            if wait is not None:
                with lock:
                    retry_after.setdefault(key, set()).add(wait)
            if response.will_close:
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            key = type(error).__name__
            if connection is not None:
                connection.close()
            connection = None
        with lock:
            statuses[key] += 1
    if connection is not None:
        connection.close()


def _probe_loop(base_url: str, stop: threading.Event, latencies: list, failures: list) -> None:
    """Probe until `stop`; a failure is kept as "<what> at <seconds into the run>"."""
    began = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            connection = _connect(base_url, timeout=PROBE_TIMEOUT)
            try:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
            finally:
                connection.close()
            elapsed = time.monotonic() - started
            if response.status == 200 and elapsed <= PROBE_TIMEOUT:
                latencies.append(elapsed)
            else:
                failures.append(f"{response.status} in {elapsed:.2f} s at {started - began:.1f} s")
        except (OSError, http.client.HTTPException) as error:
            failures.append(f"{type(error).__name__} at {started - began:.1f} s")
        stop.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - started)))


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def login_flood(
    base_url: str,
    *,
    loops: int = 30,
    seconds: float = 10,
    new_usernames: bool = False,
    spoofed_addresses: bool = False,
) -> dict:
    """Flood for `seconds`; return the login answers by status (429: refused by the throttle,
    503: no password check free in time) with the Retry-After values each status carried, and
    /healthz's latencies in ms (a probe that failed or took over 2 s is in `failed`)."""
    # One CSRF token serves every client. The login page is asked for a few times first, so
    # the workers have loaded the admin before the clock starts.
    for _ in range(4):
        connection = _connect(base_url, timeout=30)
        try:
            token = _csrf_token(connection)
        finally:
            connection.close()
    deadline = time.monotonic() + seconds
    statuses: Counter = Counter()
    retry_after: dict[str, set[str]] = {}
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()
    probe = threading.Thread(target=_probe_loop, args=(base_url, stop, latencies, failures))
    guessers = [
        threading.Thread(
            target=_guess_loop,
            args=(base_url, number, token, deadline, statuses, retry_after, lock),
            kwargs={"new_usernames": new_usernames, "spoofed_addresses": spoofed_addresses},
        )
        for number in range(loops)
    ]
    probe.start()
    for thread in guessers:
        thread.start()
    for thread in guessers:
        thread.join()
    stop.set()
    probe.join()

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "loops": loops,
        "seconds": seconds,
        "new_usernames": new_usernames,
        "spoofed_addresses": spoofed_addresses,
        "logins": dict(sorted(statuses.items())),
        "logins_429": statuses["429"],
        "retry_after": {status: sorted(waits) for status, waits in sorted(retry_after.items())},
        "healthz": {
            "probes": len(latencies) + len(failures),
            "failed": len(failures),
            "failures": failures[:10],
            "p50_ms": ms(statistics.median(latencies) if latencies else None),
            "p99_ms": ms(_percentile(latencies, 0.99)),
            "max_ms": ms(max(latencies) if latencies else None),
        },
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(login_flood(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")))
