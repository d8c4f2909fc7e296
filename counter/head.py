from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class HeadWithoutBodyMiddleware:
    """A HEAD request gets the headers of the GET response, Content-Length included, and no
    body. Views answer HEAD like GET (Django's own do); gunicorn would drop the body itself,
    but logs a warning for each such response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method != "HEAD":
            return response
        if response.streaming:
            # The streamed file (whitenoise's static files) is still closed with the response.
            response.streaming_content = ()
        else:
            response.headers.setdefault("Content-Length", str(len(response.content)))
            response.content = b""
        return response
