"""The chart's alert rules in a real Prometheus (Debian's package) scraping two real servers:
what it scrapes adds up to the servers' counts, and a database deleted under one server fires
AppPythonCountingStopped for that one only, cleared by its restart. The same on the real
cluster, with the backup alert too, is tests/test_e2e_ops.py's."""

import pytest

from support.clients import http_request
from support.cluster import until
from support.prometheus import Prometheus, chart_rules, prometheus_binary
from support.tools import helm_binary

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        prometheus_binary() is None,
        reason="prometheus is not installed: apt-get install prometheus (Debian)",
    ),
    pytest.mark.skipif(helm_binary() is None, reason="helm is not installed: `make helm`"),
]

PODS = ["app-python-0", "app-python-1"]
# The alert's `for` (1 min), a scrape and an evaluation (1 s each here), with room.
FIRES_WITHIN = 90


@pytest.fixture
def prometheus(tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    server = Prometheus(folder, chart_rules(), interval=1).start(prometheus_binary())
    yield server
    server.stop()


def test_a_deleted_database_fires_counting_stopped_for_that_pod_until_restarted(
    make_server, prometheus
):
    servers = [make_server(pod).start() for pod in PODS]
    for server in servers:
        server.wait_ready()
    prometheus.targets_write(
        {f"127.0.0.1:{s.port}": {"namespace": "default", "pod": s.data_dir.name} for s in servers}
    )
    for server, visits in zip(servers, (5, 3), strict=True):
        for _ in range(visits):
            assert http_request(server.port, "/")[0] == 200

    def scraped_total() -> float:
        (result,) = prometheus.query('sum(visits_total{namespace="default"})')
        return float(result["value"][1])

    until("Prometheus to scrape both servers' counts", lambda: scraped_total() == 8, timeout=30)

    (servers[0].data_dir / "db.sqlite3").unlink()
    until(
        "AppPythonCountingStopped for app-python-0",
        lambda: prometheus.firing("AppPythonCountingStopped"),
        timeout=FIRES_WITHIN,
    )
    (labels,) = prometheus.firing("AppPythonCountingStopped")
    assert (labels["pod"], labels["namespace"], labels["severity"]) == (
        "app-python-0", "default", "critical"
    )  # fmt: skip

    servers[0].stop()
    servers[0].start().wait_ready()
    until(
        "the alert to clear",
        lambda: not prometheus.firing("AppPythonCountingStopped"),
        timeout=FIRES_WITHIN,
    )
    until("the restarted server's count scraped", lambda: scraped_total() == 8, timeout=30)
