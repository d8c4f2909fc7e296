"""HTTP requests to a server on 127.0.0.1, and the waits for a visits file to catch up."""

import http.client
import socket
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def http_request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict | None = None,
    body: bytes | str = b"",
    timeout: float = 30,
    source: str = "127.0.0.1",
) -> tuple[int, bytes, http.client.HTTPResponse]:
    """One request on a new connection (so the kernel hands it to any worker), sent from
    `source`: any 127.x address reaches the server as another client."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response
    finally:
        connection.close()


def exchange(port: int, data: bytes, *, wait: float = 30) -> bytes:
    """Send `data`, raw bytes, on a new connection, then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as client:
        client.sendall(data)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


def wait_for_text(read: Callable[[], str], expected: str, what: str, timeout: float = 1.0) -> None:
    """A visits file must read `expected` within `timeout` s: the app's promise after the last
    visit (it trails the database by about 0.25 s)."""
    deadline = time.monotonic() + timeout
    while (text := read()) != expected:
        assert time.monotonic() < deadline, f"{what} holds {text!r}, not {expected!r}"
        time.sleep(0.01)


def wait_for_file(path: Path, expected: str) -> None:
    def read() -> str:
        try:
            return path.read_text()
        except FileNotFoundError:
            return "(no file)"

    wait_for_text(read, expected, str(path))


def metrics_parse(text: str) -> Samples:
    """Every sample of a /metrics answer: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metrics_scrape(port: int) -> Samples:
    status, body, _ = http_request(port, "/metrics")
    assert status == 200, body
    return metrics_parse(body.decode())
