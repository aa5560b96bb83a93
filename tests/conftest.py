from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from promotions.models import Scope
from promotions.services import create_api_key


@pytest.fixture
def client_with_scopes(db) -> Callable[..., APIClient]:
    """An API client whose key carries the given scopes (all of them when none are given)."""

    def make(*scopes: str) -> APIClient:
        _, key = create_api_key(name="tests", scopes=list(scopes or Scope.values))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def api(client_with_scopes) -> APIClient:
    return client_with_scopes()
