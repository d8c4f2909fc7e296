"""The site in a real browser: Debian's chromium, driven by Playwright, against real servers."""

import os
import shutil
import time

import pytest
from django.contrib.auth.hashers import make_password

from support.clients import http_request
from support.contrast import contrasts
from support.tools import APP_VERSION, ROOT

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium is not installed: apt-get install chromium", allow_module_level=True)

ARTIFACTS = ROOT / "artifacts"
# The README shows these, as the last `make docs` made them; ordinary runs leave them alone.
SCREENSHOTS = ROOT / "docs" / "screenshots" if os.environ.get("WRITE_DOCS") == "1" else None
# No sandbox as root; no background networking: this machine refuses connections to anything
# but the registries, and chromium would retry them at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 900, "height": 700})
    yield context.new_page()
    context.close()


@pytest.fixture
def csp_violations(page) -> list[str]:
    """What chromium refused under the pages' Content-Security-Policy, as it tells the console
    ("Refused to apply inline style because it violates ...")."""
    refused: list[str] = []

    def console(message) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", console)
    return refused


def screenshot(page, name: str, *, for_readme: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name, full_page=True)
    if for_readme and SCREENSHOTS is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / name, SCREENSHOTS / name)


def assert_contrast_in_both_schemes(page, name: str) -> None:
    """WCAG AA for everything the page shows, in the light and in the dark color scheme (the
    pages follow the system's: `color-scheme: light dark`); a screenshot of each in artifacts/.
    The page is left in the light scheme, which the README's screenshots show."""
    failures = []
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        measured = contrasts(page)
        assert len(measured) >= 5, f"{scheme}: only {measured} measured"
        failures += [
            f"{scheme}: {what} {ratio:.2f}:1, below {minimum}:1"
            for what, ratio, minimum in measured
            if ratio < minimum
        ]
        screenshot(page, f"{name}-{scheme}.png")
    assert not failures, "\n".join(failures)


def url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_home_page_counts_on_reload_and_draws_the_chart(make_server, page, csp_violations):
    server = make_server("app-python-0").start().wait_ready()
    page.goto(url(server, "/"))
    assert page.text_content("#pod") == "app-python-0"
    assert page.text_content("#total") == "1"
    page.reload()
    page.reload()
    assert page.text_content("#total") == "3"
    assert page.text_content("#today") == "3"
    bars = page.locator("svg.chart rect")
    assert bars.count() == 14
    today = bars.nth(13).bounding_box()
    assert today["height"] > 50 and today["width"] > 5  # drawn, scaled to the busiest day
    assert server.visits() == 3
    assert page.evaluate("getComputedStyle(document.body).display") == "grid", "style blocked"
    assert page.text_content("footer") == f"app-python {APP_VERSION}"
    assert_contrast_in_both_schemes(page, "home")
    assert csp_violations == []
    screenshot(page, "home.png", for_readme=True)


def test_admin_has_its_css_and_the_login_holds_on_another_process(
    make_server, page, csp_violations
):
    shared = {"VISITS_ADMIN_PASSWORD_HASH": make_password("s3cret-pass")}
    pod0 = make_server("app-python-0", **shared).start()
    pod1 = make_server("app-python-1", **shared).start()
    pod0.wait_ready(), pod1.wait_ready()
    page.goto(url(pod0, "/admin/login/"))
    header = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
    assert header not in ("rgba(0, 0, 0, 0)", "transparent"), "admin CSS did not load"
    assert_contrast_in_both_schemes(page, "admin-login")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "s3cret-pass")
    page.click("input[type=submit]")
    page.wait_for_url(url(pod0, "/admin/"))
    assert "Site administration" in page.text_content("#content")
    assert "pod app-python-0" in page.text_content("#site-name")
    assert_contrast_in_both_schemes(page, "admin")
    screenshot(page, "admin.png")
    # Passwords come from the environment: the header's link says so, and offers no form.
    page.click("#user-tools >> text=Change password")
    assert "Passwords are not changed here" in page.text_content("#content")
    assert page.locator("#content form").count() == 0
    assert_contrast_in_both_schemes(page, "admin-password")
    # The next request is answered by another process of the same "StatefulSet".
    page.goto(url(pod1, "/admin/counter/dailyvisits/"))
    assert page.url == url(pod1, "/admin/counter/dailyvisits/")
    assert "pod app-python-1" in page.text_content("#site-name")
    # The admin's scripts run under the policy: the theme toggle (theme.js) switches the theme.
    theme = page.evaluate("document.documentElement.dataset.theme || 'auto'")
    page.click("button.theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") != theme
    assert csp_violations == []


def test_cluster_page_shows_every_pod_and_marks_a_stopped_one(make_server, page, csp_violations):
    pods = [make_server(f"app-python-{n}") for n in range(3)]
    peers = ",".join(f"http://127.0.0.1:{pod.port}" for pod in pods)
    for pod in pods:
        pod.env["VISITS_PEERS"] = peers
        pod.start()
    for pod, visits in zip(pods, (8, 2, 10), strict=True):
        pod.wait_ready()
        for _ in range(visits):
            assert http_request(pod.port, "/")[0] == 200
    page.goto(url(pods[1], "/cluster"))
    assert page.locator("svg.chart g.pod").count() == 3
    assert page.text_content("#total") == "20"
    assert page.text_content("#reachable") == "3/3"
    assert page.text_content("[data-pod=app-python-2]") == "app-python-2: 10 visits"
    assert page.text_content("footer") == f"app-python {APP_VERSION}"
    assert_contrast_in_both_schemes(page, "cluster")
    screenshot(page, "cluster.png", for_readme=True)

    pods[2].stop()
    deadline = time.monotonic() + 15  # answers are cached for 2 s
    while page.text_content("#reachable") != "2/3":
        assert time.monotonic() < deadline, page.text_content("#pods")
        page.reload()
    stopped = page.text_content(f'[data-pod="http://127.0.0.1:{pods[2].port}"]')
    assert stopped.endswith("unreachable (refused)")
    assert page.text_content("#total") == "10"
    assert page.locator("svg.chart rect.down").count() == 1
    assert_contrast_in_both_schemes(page, "cluster-one-down")
    assert csp_violations == []
    screenshot(page, "cluster-one-down.png")
