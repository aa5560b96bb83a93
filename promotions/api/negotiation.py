"""Which renderer answers a request."""

from typing import Any

from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request


class NamedFormatsOnly(DefaultContentNegotiation):
    """DRF's, but a `?format=` no renderer serves is a 406 naming the formats there are: DRF
    answers it with a bare 404 "Not found.", which reads as if the resource did not exist."""

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            asked = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            served = " or ".join(sorted({renderer.format for renderer in renderers}))
            raise NotAcceptable(
                f"Answered as {served} only: format '{asked}' is not served."
            ) from None
