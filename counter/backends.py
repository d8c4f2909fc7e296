from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from counter.login_throttle import client_address, login_attempt_admit


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend behind the login throttle (counter/login_throttle.py). A refused
    attempt is marked on the request for LoginThrottleMiddleware and stops authenticate()
    before any password is hashed."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if request is not None and username is not None:
            retry_after = login_attempt_admit(address=client_address(request), username=username)
            if retry_after:
                request.login_retry_after = retry_after  # type: ignore[attr-defined]
                raise PermissionDenied
        return super().authenticate(request, username, password, **kwargs)
