"""The one request parser: JSON, bounded in size, with errors a client can act on."""

import json
import re
import zlib
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

from promotions.api.ping_batch import decode_ping_batch

# An escaped UTF-16 surrogate; a lone one decodes to a str no database can store.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


# The content codings a body may come in (RFC 9110 8.4.1), and the zlib window for each:
# gzip's header and trailer, or deflate's zlib wrapping. Mobile SDKs gzip their uploads.
_DECOMPRESSED_WINDOW = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
ACCEPTED_ENCODINGS = "gzip, deflate"


class RequestTooLarge(APIException):
    status_code = 413
    default_detail = "Request body too large."
    default_code = "too_large"


class UnsupportedContentEncoding(APIException):
    status_code = 415
    default_detail = f"Send the body uncompressed, or with one of: {ACCEPTED_ENCODINGS}."
    default_code = "unsupported_content_encoding"


class JsonBodyParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        request = parser_context["request"]
        coding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if coding not in ("", "identity") and coding not in _DECOMPRESSED_WINDOW:
            # Said up front: a body in another coding read as JSON fails with a message about
            # UTF-8 or syntax that sends the client looking in the wrong place. The header
            # names the codings understood (RFC 7694); DRF sets the view's headers on every
            # response, errors included.
            view = parser_context.get("view")
            if view is not None:
                view.headers["Accept-Encoding"] = ACCEPTED_ENCODINGS
            raise UnsupportedContentEncoding(
                f"Content-Encoding {coding[:40]!r} is not supported; send the body "
                f"uncompressed, or with one of: {ACCEPTED_ENCODINGS}."
            )
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"Request body is over the {limit}-byte limit.")
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(f"Request body is over the {limit}-byte limit.")
        if coding in _DECOMPRESSED_WINDOW:
            body = _decompressed(body, coding, limit)
        return self.decode(body)

    def decode(self, body: bytes) -> Any:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ParseError(
                f"Body is not UTF-8: invalid byte at position {error.start}."
            ) from None
        try:
            # NaN and Infinity literals are read as floats so that validation can reject the
            # one item that carries them, instead of the whole batch.
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ParseError(
                f"Malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}."
            ) from None
        except (ValueError, RecursionError):
            raise ParseError("Malformed JSON: a number is too long or nesting too deep.") from None
        if _ESCAPED_SURROGATE.search(body):
            try:
                json.dumps(data, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError("Body contains an unpaired UTF-16 surrogate escape.") from None
        return data


def _decompressed(body: bytes, coding: str, limit: int) -> bytes:
    """The body decompressed, refused once it grows over `limit` bytes: a few kilobytes of
    gzip can hold gigabytes of spaces, which are never produced whole."""
    decompressor = zlib.decompressobj(_DECOMPRESSED_WINDOW[coding])
    try:
        data = decompressor.decompress(body, limit + 1)
        if len(data) > limit:
            raise RequestTooLarge(f"Request body is over the {limit}-byte limit decompressed.")
        if not decompressor.eof or decompressor.unused_data:
            # Several gzip members one after the other are valid gzip, but no client sends
            # them; trailing bytes are as likely a corrupt upload.
            raise ParseError(f"Body is not one complete {coding} stream.")
    except zlib.error:
        raise ParseError(f"Body is not valid {coding}.") from None
    return data


class PingBatchParser(JsonBodyParser):
    """A batch of well-formed pings decodes straight to typed items (promotions.api.
    ping_batch); any other body is parsed as JSON for the general path to judge."""

    def decode(self, body: bytes) -> Any:
        batch = decode_ping_batch(body)
        return super().decode(body) if batch is None else batch
