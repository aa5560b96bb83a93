"""`Authorization: Api-Key <key>` authentication and per-view scopes."""

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from promotions.models import ApiKey

KEYWORD = "Api-Key"
# Writing last_used_at on every request would put a write on the ingest hot path.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiClient:
    """The caller behind a key; stands in for a user in DRF."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.name = api_key.name

    def __str__(self) -> str:
        return self.name


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != KEYWORD.lower() or not key:
            raise AuthenticationFailed(f"Send the key as 'Authorization: {KEYWORD} <key>'.")
        api_key = ApiKey.objects.filter(key_hash=ApiKey.hash(key), revoked_at=None).first()
        if api_key is None:
            raise AuthenticationFailed("Unknown or revoked API key.")
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return ApiClient(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class HasScope(BasePermission):
    """Allows a request whose key carries the view's `required_scope`; denies views without one."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            return False
        scope = getattr(view, "required_scope", None)
        if scope is None or scope not in request.auth.scopes:
            self.message = f"This API key lacks the '{scope}' scope."
            return False
        return True


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{KEYWORD} <key>`; create one with `manage.py create_api_key`.",
        }
