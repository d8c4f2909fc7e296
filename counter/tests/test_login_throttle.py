import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from django.db.models import F
from django.test import RequestFactory

from counter.login_throttle import client_address
from counter.models import LoginFailures

PASSWORD = "s3cret-pass"


class CountingHasher(PBKDF2PasswordHasher):
    """The real hasher, counting how often it hashes (a locked attempt must not), with fewer
    iterations: the tests make hundreds of attempts."""

    iterations = 1000
    calls = 0

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        CountingHasher.calls += 1
        return super().encode(password, salt, iterations)


@pytest.fixture
def hasher(settings) -> type[CountingHasher]:
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    CountingHasher.calls = 0
    return CountingHasher


@pytest.fixture
def admin_user(db, hasher) -> User:
    return User.objects.create_superuser("admin", password=PASSWORD)


def login(
    client, username: str = "admin", password: str = "wrong", address: str = "10.0.0.1", **extra
):
    return client.post(
        "/admin/login/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **extra,
    )


def test_ten_failures_then_429_with_retry_after_even_for_the_right_password(client, admin_user):
    for _ in range(10):
        assert login(client).status_code == 200  # the form again, "wrong password"
    hashed = CountingHasher.calls
    response = login(client, password=PASSWORD)
    assert response.status_code == 429
    assert 890 <= int(response["Retry-After"]) <= 900
    assert CountingHasher.calls == hashed, "a locked attempt ran the password hasher"
    assert "_auth_user_id" not in client.session


def test_the_lockout_time_comes_from_the_setting(client, admin_user, settings):
    settings.VISITS_LOGIN_LOCKOUT_SECONDS = 60
    for _ in range(10):
        login(client)
    assert 50 <= int(login(client)["Retry-After"]) <= 60


def test_another_address_or_username_is_not_locked(client, admin_user):
    for _ in range(10):
        login(client)
    assert login(client).status_code == 429
    assert login(client, username="other").status_code == 200
    response = login(client, password=PASSWORD, address="10.0.0.2")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_a_login_resets_the_count(client, admin_user):
    for _ in range(9):
        login(client)
    assert login(client, password=PASSWORD).status_code == 302
    client.logout()
    for _ in range(9):
        assert login(client).status_code == 200
    assert login(client, password=PASSWORD).status_code == 302


def test_the_lockout_ends_after_its_time(client, admin_user):
    for _ in range(10):
        login(client)
    assert login(client, password=PASSWORD).status_code == 429
    LoginFailures.objects.update(last_failure=F("last_failure") - 900)
    assert login(client, password=PASSWORD).status_code == 302


def test_an_address_trying_a_new_username_each_time_is_locked_too(client, admin_user, settings):
    limit = settings.VISITS_LOGIN_ADDRESS_FAILURE_LIMIT
    for n in range(limit):
        assert login(client, username=f"guess{n}").status_code == 200
    hashed = CountingHasher.calls
    assert login(client, username="admin", password=PASSWORD).status_code == 429
    assert login(client, username="guess-next").status_code == 429
    assert CountingHasher.calls == hashed
    assert login(client, password=PASSWORD, address="10.0.0.2").status_code == 302


def test_forwarded_for_is_ignored_unless_proxy_hops_are_trusted(settings):
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 10.2.2.2"
    )
    assert client_address(request) == "10.1.1.1"
    settings.VISITS_TRUSTED_PROXY_HOPS = 1
    assert client_address(request) == "10.2.2.2"
    settings.VISITS_TRUSTED_PROXY_HOPS = 2
    assert client_address(request) == "203.0.113.7"
    settings.VISITS_TRUSTED_PROXY_HOPS = 4  # fewer entries than proxies: not through them all
    assert client_address(request) == "10.1.1.1"


def test_a_spoofed_forwarded_for_does_not_escape_the_lockout(client, admin_user, settings):
    settings.VISITS_TRUSTED_PROXY_HOPS = 1
    for n in range(10):
        login(client, HTTP_X_FORWARDED_FOR=f"6.6.6.{n}, 10.9.9.9")
    response = login(client, password=PASSWORD, HTTP_X_FORWARDED_FOR="7.7.7.7, 10.9.9.9")
    assert response.status_code == 429
    assert LoginFailures.objects.filter(address="10.9.9.9").exists()
