"""Malformed and hostile requests, sent as raw bytes to a real `manage.py serve` (gunicorn 27's
HTTP parser, gevent workers): each gets the answer gunicorn gave when it was tried by hand
(docs/security.md lists them), nothing is counted and nothing is logged with a traceback."""

import socket
import time

import pytest

from support.clients import exchange, http_request, metrics_scrape
from support.servers import connections_held

pytestmark = pytest.mark.server

HOST = b"Host: localhost\r\n"


def post(*headers: bytes, body: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"POST / HTTP/" + version + b"\r\n" + HOST + b"".join(headers) + b"\r\n" + body


def get(*headers: bytes, path: bytes = b"/") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\n" + HOST + b"".join(headers) + b"\r\n"


def html(text: str) -> bytes:
    """gunicorn's error page escapes quotes as &#x27; and > as &gt;."""
    return text.replace("'", "&#x27;").replace(">", "&gt;").encode()


# name: (request, gunicorn's status line, what its page says). A smuggled `GET /` rides in the
# body where a server that took the wrong framing would serve it, and count a visit.
SMUGGLED = b"0\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
REFUSED = {
    "Content-Length and Transfer-Encoding": (
        post(b"Content-Length: 4\r\n", b"Transfer-Encoding: chunked\r\n", body=SMUGGLED),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'CONTENT-LENGTH'",
    ),
    "two Content-Length": (
        post(b"Content-Length: 0\r\n", b"Content-Length: 41\r\n", body=SMUGGLED),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'CONTENT-LENGTH'",
    ),
    "two equal Content-Length": (
        post(b"Content-Length: 5\r\n", b"Content-Length: 5\r\n", body=b"hello"),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'CONTENT-LENGTH'",
    ),
    "a Content-Length list": (
        post(b"Content-Length: 5, 5\r\n", body=b"hello"),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'CONTENT-LENGTH'",
    ),
    "a signed Content-Length": (
        post(b"Content-Length: +5\r\n", body=b"hello"),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'CONTENT-LENGTH'",
    ),
    "an unknown Transfer-Encoding": (  # gunicorn's status line pairs 501 with "Bad Request"
        post(b"Transfer-Encoding: xchunked\r\n", body=SMUGGLED),
        b"HTTP/1.1 501 Bad Request",
        "Unsupported transfer coding: 'xchunked'",
    ),
    "chunked, then identity": (
        post(b"Transfer-Encoding: chunked, identity\r\n", body=SMUGGLED),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'TRANSFER-ENCODING'",
    ),
    "two Transfer-Encoding": (
        post(b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\n", body=SMUGGLED),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'TRANSFER-ENCODING'",
    ),
    "Transfer-Encoding in HTTP/1.0": (
        post(b"Transfer-Encoding: chunked\r\n", body=SMUGGLED, version=b"1.0"),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'TRANSFER-ENCODING'",
    ),
    "a space before the colon": (
        post(b"Transfer-Encoding : chunked\r\n", body=SMUGGLED),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP header name: 'Transfer-Encoding '",
    ),
    "obs-fold": (
        get(b"X-Folded: a\r\n", b" b\r\n"),
        b"HTTP/1.1 400 Bad Request",
        "Obsolete line folding is unacceptable: 'X-FOLDED'",
    ),
    "obs-fold hiding a Transfer-Encoding": (
        post(b"X-Foo: a\r\n", b" Transfer-Encoding: chunked\r\n", body=SMUGGLED),
        b"HTTP/1.1 400 Bad Request",
        "Obsolete line folding is unacceptable: 'X-FOO'",
    ),
    "a bare LF after the request line": (
        b"GET / HTTP/1.1\nHost: localhost\n\n",
        b"HTTP/1.1 400 Bad Request",
        "Invalid Request Line 'Invalid HTTP request line: 'bare LF as line terminator''",
    ),
    "a bare LF after a header": (
        b"GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n",
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'HOST'",
    ),
    "a bare CR after a header": (
        b"GET / HTTP/1.1\r\nHost: localhost\rX-A: b\r\n\r\n",
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'HOST'",
    ),
    "a NUL in a header": (
        get(b"X-A: b\x00c\r\n"),
        b"HTTP/1.1 400 Bad Request",
        "Invalid HTTP Header: 'X-A'",
    ),
}


# What gunicorn logs, where it is not what its page says.
LOGGED = {
    "a bare LF after the request line": "Invalid HTTP request line: 'bare LF as line terminator'"
}


def assert_nothing_counted_and_no_traceback(server) -> None:
    assert server.visits() == 0
    server.wait_file(0)
    assert "Traceback" not in server.log()


def test_smuggling_and_malformed_framing_are_refused_before_django(make_server):
    server = make_server().start().wait_ready()
    wrong = {}
    for name, (request, status, says) in REFUSED.items():
        answer = exchange(server.port, request, wait=10)  # gunicorn closes the connection
        head, _, body = answer.partition(b"\r\n\r\n")
        if not (head.startswith(status + b"\r\n") and html(says) in body):
            wrong[name] = answer
    assert not wrong, wrong
    log = server.log()
    for name, (_, _, says) in REFUSED.items():
        assert f"Invalid request from ip=127.0.0.1: {LOGGED.get(name, says)}\n" in log, name
    assert log.count("Invalid request from ip=127.0.0.1") == len(REFUSED)
    assert_nothing_counted_and_no_traceback(server)


def test_an_odd_transfer_encoding_gunicorn_accepts_reaches_django_as_a_chunked_body(make_server):
    """`gzip, chunked` is valid framing: gunicorn takes the chunks (the smuggled GET inside the
    body is only body) and passes the rest on; Django refuses the POST for its CSRF cookie."""
    server = make_server().start().wait_ready()
    request = post(b"Transfer-Encoding: gzip, chunked\r\n", b"Connection: close\r\n", body=SMUGGLED)
    answer = exchange(server.port, request, wait=10)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert "Forbidden (CSRF cookie not set.): /" in server.log()
    assert_nothing_counted_and_no_traceback(server)


def request_line(length: int) -> bytes:
    """`GET /visits?aaa... HTTP/1.1` of `length` bytes, CRLF not counted."""
    start, end = b"GET /visits?", b" HTTP/1.1"
    return start + b"a" * (length - len(start) - len(end)) + end + b"\r\n"


def test_a_request_line_over_the_limit_gets_414(make_server):
    server = make_server().start().wait_ready()
    close = HOST + b"Connection: close\r\n\r\n"
    assert exchange(server.port, request_line(4094) + close).startswith(b"HTTP/1.1 200 OK\r\n")
    answer = exchange(server.port, request_line(4095) + close)
    assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert html("Request Line is too large (4095 > 4094)") in answer
    assert "Invalid request from ip=127.0.0.1: Request Line is too large (4095 > 4094)" in (
        server.log()
    )
    assert_nothing_counted_and_no_traceback(server)


def test_headers_over_the_limit_get_431(make_server):
    server = make_server().start().wait_ready()
    close = b"Connection: close\r\n"
    fields = [b"X-%d: a\r\n" % n for n in range(98)]  # with Host and Connection: 100, the limit
    at_the_limit = get(close, *fields, path=b"/visits")
    assert exchange(server.port, at_the_limit).startswith(b"HTTP/1.1 200 OK\r\n")
    answer = exchange(server.port, get(close, *fields, b"X-One-Too-Many: a\r\n"))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert html("Error parsing headers: 'limit request headers fields'") in answer
    big = b"X-Big: " + b"a" * 8183 + b"\r\n"  # 8191 bytes with its CRLF, over 8190
    answer = exchange(server.port, get(close, big))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert html("Error parsing headers: 'limit request headers fields size'") in answer
    log = server.log()
    assert "Invalid request from ip=127.0.0.1: limit request headers fields\n" in log
    assert "Invalid request from ip=127.0.0.1: limit request headers fields size\n" in log
    assert_nothing_counted_and_no_traceback(server)


def test_an_absolute_form_target_is_judged_by_its_own_host(make_server):
    """gunicorn answered `GET http://evil.example/` with Host: localhost as a visit to
    localhost (200, counted). RFC 9112 (3.2.2): the target's host counts, not the header's."""
    server = make_server().start().wait_ready()
    close = b"Connection: close\r\n\r\n"
    for target, host in [
        (b"http://evil.example/", HOST),
        (b"http://evil.example/", b""),
        (b"http://admin@localhost/", HOST),
    ]:
        answer = exchange(server.port, b"GET " + target + b" HTTP/1.1\r\n" + host + close)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (target, answer)
        assert b"<h1>Bad Request (400)</h1>" in answer
    ours = b"GET http://localhost/visits HTTP/1.1\r\nHost: x.example\r\n"
    assert exchange(server.port, ours + close).startswith(b"HTTP/1.1 200 OK\r\n")
    # Origin form with a URL in its query: the Host header counts, as for any other.
    origin = b"GET /visits?next=http://evil.example/ HTTP/1.1\r\n" + HOST
    assert exchange(server.port, origin + close).startswith(b"HTTP/1.1 200 OK\r\n")
    log = server.log()
    assert log.count("Invalid HTTP_HOST header: 'evil.example'") == 2
    assert "Invalid HTTP_HOST header: 'admin@localhost'" in log
    assert_nothing_counted_and_no_traceback(server)


def test_clients_that_never_read_their_answers_are_closed_and_probes_go_on(make_server):
    """20 clients each send 100 requests for the admin's jQuery (290 KB) and read nothing: each
    answer waits on a full socket buffer. The probes and visits of other clients are answered
    meanwhile, and after SEND_TIMEOUT (30 s) without progress the server closes them."""
    server = make_server().start().wait_ready()
    workers = server.worker_pids()
    request = b"GET /static/admin/js/vendor/jquery/jquery.js HTTP/1.1\r\n" + HOST + b"\r\n"
    silent = []
    for _ in range(20):
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", server.port))
        client.sendall(request * 100)
        silent.append(client)
    try:
        deadline = time.monotonic() + 10
        while sum(connections_held(server, pid) for pid in workers) < 20:
            assert time.monotonic() < deadline, "the server did not take the 20 connections"
            time.sleep(0.05)
        visits, deadline = 0, time.monotonic() + 60
        while sum(connections_held(server, pid) for pid in workers) > 0:
            assert time.monotonic() < deadline, "the silent clients' connections are still held"
            for path in ("/healthz", "/readyz"):  # the kubelet's timeout
                assert http_request(server.port, path, timeout=2)[0] == 200, path
            assert http_request(server.port, "/", timeout=2)[0] == 200
            visits += 1
            time.sleep(0.25)
    finally:
        for client in silent:
            client.close()
    assert server.visits() == visits  # only the visits of the clients that read their answers
    server.wait_file(visits)
    refused = metrics_scrape(server.port)
    assert refused[("app_python_requests_refused_total", (("reason", "answer_not_taken"),))] == 20
    log = server.log()
    assert "closed the connection of 127.0.0.1: it took no part of its answer for 30 s" in log
    assert log.count("it took no part of its answer") <= 2  # one line per worker per 10 s
    assert "Traceback" not in log
    assert server.worker_pids() == workers
