import base64
import hashlib
import re

from counter.middleware import CONTENT_SECURITY_POLICY


def test_the_policy_allows_exactly_the_pages_inline_style(client, counter):
    response = client.get("/")
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    page = response.content.decode()
    styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'self' 'sha256-{digest}';" in CONTENT_SECURITY_POLICY
    assert re.search(r"<script|\son\w+=|style=", page) is None  # nothing else inline
