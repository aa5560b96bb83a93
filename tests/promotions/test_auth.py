import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from promotions.models import ApiKey, Scope
from promotions.services import create_api_key

pytestmark = pytest.mark.django_db

# One operation per scope, each harmless to call with an empty or unknown target.
SCOPED_REQUESTS = [
    (Scope.INGEST, "post", "/api/v1/pings", {"pings": []}),
    (Scope.INGEST, "post", "/api/v1/events", {"events": []}),
    (Scope.INGEST, "post", "/api/v1/sightings", {"sightings": []}),
    (Scope.INGEST, "post", "/api/v1/gateways/gw-1/sightings", {"sightings": []}),
    (Scope.INGEST, "post", "/api/v1/devices", {}),
    (Scope.INGEST, "post", "/api/v1/identify", {}),
    (Scope.CUSTOMERS, "get", "/api/v1/customers/C-1", None),
    (Scope.CUSTOMERS, "get", "/api/v1/customers/C-1/export", None),
    (Scope.CONFIG, "get", "/api/v1/stores", None),
    (Scope.CONFIG, "get", "/api/v1/zones", None),
    (Scope.CONFIG, "get", "/api/v1/beacons", None),
    (Scope.CONFIG, "get", "/api/v1/gateways", None),
    (Scope.CONFIG, "get", "/api/v1/campaigns", None),
]


def call(client, method, path, body):
    return (
        getattr(client, method)(path, body, format="json")
        if body is not None
        else getattr(client, method)(path)
    )


@pytest.mark.parametrize(("scope", "method", "path", "body"), SCOPED_REQUESTS)
def test_no_key_is_401_with_the_scheme_named(scope, method, path, body):
    response = call(APIClient(), method, path, body)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(("scope", "method", "path", "body"), SCOPED_REQUESTS)
def test_a_key_without_the_scope_is_403(client_with_scopes, scope, method, path, body):
    others = [other for other in Scope.values if other != scope]

    response = call(client_with_scopes(*others), method, path, body)

    assert response.status_code == 403
    assert scope in response.json()["detail"]


@pytest.mark.parametrize(("scope", "method", "path", "body"), SCOPED_REQUESTS)
def test_a_key_with_the_scope_gets_through(client_with_scopes, scope, method, path, body):
    response = call(client_with_scopes(scope), method, path, body)

    assert response.status_code not in (401, 403)


@pytest.mark.parametrize(
    "header",
    ["Api-Key psg_wrong", "Bearer whatever", "Api-Key", "Api-Key   ", "Token abc"],
)
def test_a_wrong_key_or_scheme_is_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/stores")

    assert response.status_code == 401


def test_a_revoked_key_is_401():
    api_key, key = create_api_key(name="old", scopes=["config"])
    api_key.revoked_at = api_key.created_at
    api_key.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    assert client.get("/api/v1/stores").status_code == 401


def test_keys_are_stored_hashed_and_their_use_is_recorded():
    api_key, key = create_api_key(name="pos", scopes=["config"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    client.get("/api/v1/stores")

    api_key.refresh_from_db()
    assert key not in (api_key.key_hash, api_key.prefix)
    assert key.startswith(api_key.prefix)
    assert api_key.last_used_at is not None


def test_create_api_key_prints_the_key_alone_on_its_last_line(capsys):
    call_command("create_api_key", "ios-app", "--scopes", "ingest,customers")

    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {last_line}")
    assert client.get("/api/v1/customers/C-1").status_code == 404
    assert client.get("/api/v1/stores").status_code == 403
    assert ApiKey.objects.get().scopes == ["customers", "ingest"]


def test_create_api_key_with_all_scopes(capsys):
    call_command("create_api_key", "ops", "--scopes", "all")

    assert ApiKey.objects.get().scopes == sorted(Scope.values)


@pytest.mark.parametrize("scopes", ["ingest,everything", "", ","])
def test_create_api_key_refuses_unknown_scopes(scopes):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Scopes are"):
        call_command("create_api_key", "bad", "--scopes", scopes)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("name", ["", "  ", "x" * 101])
def test_create_api_key_refuses_a_blank_or_overlong_name(name):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="1 to 100 characters"):
        call_command("create_api_key", name, "--scopes", "ingest")
    assert not ApiKey.objects.exists()
