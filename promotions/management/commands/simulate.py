"""Drive synthetic shoppers through the real HTTP API and print the funnel.

    python manage.py simulate --shoppers 50 --minutes 8
    python manage.py simulate --shoppers 500 --base-url http://127.0.0.1:8000 --api-key psg_...

In-process (the default), requests go through Django's full HTTP stack with a key created for
the run and revoked after it; against a server, with the key given (scopes ingest, customers,
config and reports). Shoppers browse the products live campaigns are about, then walk past or
into stores, their phones pinging with realistic noise and ranging the store's beacons inside.
Their phone numbers are reserved for fiction (simulation.fictional_phone), so they reach nobody.
"""

import contextlib
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http.request import validate_host
from django.utils import timezone

from promotions import simulation
from promotions.management.commands._database import database_ready

BATCH = 500
REMOTE_TIMEOUT_SECONDS = 60
# Against a server, how the funnel waits for its workers (settled_deliveries).
SETTLE_POLL_SECONDS = 1.0
SETTLE_QUIET_SECONDS = 5.0
SETTLE_MAX_SECONDS = 120.0
# One harmless request for each scope the simulator's calls need: the API answers 403 when
# the key lacks that scope. Asked before any shopper is created, so a key short of one
# stops the run cleanly instead of leaving shoppers behind or printing a funnel of zeros.
SCOPE_PROBES = {
    "config": ("GET", "/api/v1/stores?page=1", None),
    "customers": ("GET", "/api/v1/customers/SIM-scope-check", None),
    "ingest": ("POST", "/api/v1/identify", {}),
    "reports": ("GET", "/api/v1/deliveries?customer_id=SIM-scope-check", None),
}


class Shopper(TypedDict):
    customer_id: str
    device_id: str
    phone: str
    consent: str


class InProcessApi:
    def __init__(self) -> None:
        from django.test import Client

        from promotions.services import create_api_key

        self.api_key, key = create_api_key(
            name="simulator (in-process run)",
            scopes=list(SCOPE_PROBES),
        )
        self.client = Client(
            HTTP_AUTHORIZATION=f"Api-Key {key}",
            HTTP_HOST=_accepted_host(),
        )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        secure = bool(settings.SECURE_SSL_REDIRECT)
        if method == "GET":
            response = self.client.get(path, secure=secure)
        else:
            response = getattr(self.client, method.lower())(
                path, body, content_type="application/json", secure=secure
            )
        return response.status_code, response.json() if response.content else None

    def close(self) -> None:
        self.api_key.revoked_at = timezone.now()
        self.api_key.save(update_fields=["revoked_at"])


@contextlib.contextmanager
def tasks_in_this_process() -> Iterator[None]:
    """In-process, the pings are processed and the SMS sent in this process, as without a
    broker, whatever CELERY_BROKER_URL names: handed to a deployment's workers instead, they
    would be decided after the funnel was printed (no presence event, no decision), and
    sent through the workers' SMS backend, --quiet or not."""
    from config.celery import app

    saved = settings.CELERY_TASK_ALWAYS_EAGER, app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = app.conf.task_always_eager = True
    try:
        yield
    finally:
        settings.CELERY_TASK_ALWAYS_EAGER, app.conf.task_always_eager = saved


def _accepted_host() -> str:
    """A Host the settings accept: `localhost` where it is (`*`, the debug defaults), else the
    first host ALLOWED_HOSTS names (`.example.com` stands for example.com and its subdomains)."""
    for host in ["localhost", *(pattern.lstrip(".") for pattern in settings.ALLOWED_HOSTS)]:
        if validate_host(host, settings.ALLOWED_HOSTS or ["localhost"]):
            return host
    return "localhost"


def check_base_url(base_url: str) -> str:
    """The server's address without its trailing slash; a CommandError unless http(s)://host."""
    try:
        parts = urlsplit(base_url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(
            f"--base-url {base_url!r}: expected an http(s) URL such as http://127.0.0.1:8000."
        )
    return base_url.rstrip("/")


def _why(error: Exception) -> str:
    """The cause of a failed request in a few words ("connection refused"), not urllib3's
    nested reprs."""
    import requests

    if isinstance(error, requests.Timeout):
        return f"no answer within {REMOTE_TIMEOUT_SECONDS} s"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    if errno:
        return errno.group(1).strip().lower()
    return str(error)[:200] or type(error).__name__


class RemoteApi:
    def __init__(self, base_url: str, key: str) -> None:
        import requests

        self.base_url = check_base_url(base_url)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {key}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        import requests

        try:
            response = self.session.request(
                method, self.base_url + path, json=body, timeout=REMOTE_TIMEOUT_SECONDS
            )
        except requests.RequestException as error:
            raise CommandError(f"Cannot reach {self.base_url}: {_why(error)}.") from None
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:  # requests' JSONDecodeError is one
            kind = response.headers.get("Content-Type", "no content type")
            raise CommandError(
                f"{method} {self.base_url}{path} answered {response.status_code} with {kind}, "
                "not JSON: is --base-url a Passage server?"
            ) from None

    def close(self) -> None:
        self.session.close()


# What the simulator calls: the API in this process, or a server's over HTTP.
Api = InProcessApi | RemoteApi


class Command(BaseCommand):
    help = "Drive synthetic shoppers through the API (browsing, walking past and into stores)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--shoppers", type=int, default=50, help=f"From 1 to {simulation.MAX_SHOPPERS}."
        )
        parser.add_argument(
            "--minutes", type=float, default=8, help="How long each shopper walks, ending now."
        )
        parser.add_argument(
            "--base-url",
            help=(
                "A running server; in-process when left out. Warning: a server configured "
                "for Twilio (SMS_BACKEND=twilio) sends the shoppers' SMS through Twilio for "
                "real, to numbers reserved for fiction."
            ),
        )
        parser.add_argument(
            "--api-key", help="With --base-url: a key with ingest, customers, config, reports."
        )
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument(
            "--quiet", action="store_true", help="In-process: keep the SMS in memory, unprinted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["shoppers"] <= simulation.MAX_SHOPPERS:
            raise CommandError(
                f"--shoppers must be between 1 and {simulation.MAX_SHOPPERS}: the simulator has "
                f"{simulation.MAX_SHOPPERS} phone numbers reserved for fiction, one a shopper."
            )
        if not 1 <= options["minutes"] <= 60:
            raise CommandError("--minutes must be between 1 and 60.")
        if options["base_url"]:
            check_base_url(options["base_url"])
            if not options["api_key"]:
                raise CommandError("--base-url needs --api-key.")
            # Keys are url-safe base64 (promotions.services.create_api_key). Quotes a chat put
            # around one failed in the HTTP client with a traceback, a line break as if the
            # server could not be reached.
            if not re.fullmatch(r"[A-Za-z0-9_-]+", options["api_key"]):
                raise CommandError(
                    "--api-key: expected the key as create_api_key printed it (letters, "
                    "digits, - and _), without quotes or spaces."
                )
        elif options["api_key"]:
            raise CommandError("--api-key needs --base-url: in-process, no key is used.")
        elif settings.SMS_BACKEND == "twilio":
            raise CommandError(
                "Refusing to run in-process while SMS_BACKEND=twilio: the shoppers' SMS would "
                "go to Twilio."
            )
        if options["quiet"] and not options["base_url"]:
            settings.SMS_BACKEND = "locmem"
        # In-process, each eager task would log a line between the progress bar's updates.
        logging.getLogger("celery").setLevel(logging.WARNING)
        with database_ready(), contextlib.ExitStack() as stack:
            if options["base_url"]:
                api: Api = RemoteApi(options["base_url"], options["api_key"])
            else:
                stack.enter_context(tasks_in_this_process())
                api = InProcessApi()
            try:
                self.run(api, options)
            finally:
                api.close()

    def run(self, api: Api, options: dict[str, Any]) -> None:
        self.check_scopes(api)
        rng = random.Random(options["seed"])
        run = f"{int(time.time()) % 100_000:05d}"
        stores = self.fetch_all(api, "/api/v1/stores")
        if not stores:
            raise CommandError("No stores: load some first (make run loads the demo).")
        beacons: dict[str, list[dict[str, Any]]] = {}
        for beacon in self.fetch_all(api, "/api/v1/beacons"):
            if beacon.get("ibeacon"):
                beacons.setdefault(beacon["store"], []).append(beacon["ibeacon"])
        campaigns = self.fetch_all(api, "/api/v1/campaigns?status=active")
        products = self.products_of(campaigns)
        started = datetime.now(UTC)
        totals: Counter[str] = Counter()

        shoppers = [self.shopper(run, n, rng) for n in range(options["shoppers"])]
        self.setup_shoppers(api, shoppers, products, rng, totals)
        minutes = options["minutes"]
        walk_start = datetime.now(UTC) - timedelta(minutes=minutes)
        for done, shopper in enumerate(shoppers, start=1):
            store = rng.choice(stores)
            fixes = simulation.walk(
                latitude=store["latitude"],
                longitude=store["longitude"],
                radius_m=store["radius_m"] or 50.0,
                enters=rng.random() < 0.5,
                start=walk_start + timedelta(seconds=rng.uniform(0, 20)),
                minutes=minutes,
                rng=rng,
            )
            self.post_walk(api, shopper, fixes, beacons.get(store["code"], []), rng, totals)
            self.progress(done, len(shoppers))
        self.stderr.write("")
        self.report(api, run, started, options, totals)

    # --- setup --------------------------------------------------------------------------

    def check_scopes(self, api: Api) -> None:
        missing = []
        # In-process, the probes' expected 400 and 404 would each log a warning line.
        request_log = logging.getLogger("django.request")
        level = request_log.level
        request_log.setLevel(logging.ERROR)
        try:
            for scope, (method, path, body) in SCOPE_PROBES.items():
                status, answer = api.call(method, path, body)
                if status == 403:
                    missing.append(scope)
                elif status == 401:
                    raise CommandError(f"{method} {path} answered {status}: {answer}")
        finally:
            request_log.setLevel(level)
        if missing:
            needed = ", ".join(SCOPE_PROBES)
            raise CommandError(
                f"The API key lacks the {', '.join(missing)} scope{'s' * (len(missing) > 1)}: "
                f"the simulator needs {needed}."
            )

    def fetch_all(self, api: Api, path: str) -> list[dict]:
        items, page = [], 1
        while True:
            joiner = "&" if "?" in path else "?"
            status, body = api.call("GET", f"{path}{joiner}page={page}")
            if status != 200:
                raise CommandError(f"GET {path} answered {status}: {body}")
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise CommandError(f"GET {path} answered a list Passage does not write: {body}")
            items += body["results"]
            if not body.get("next"):
                return items
            page += 1

    def products_of(self, campaigns: list[dict]) -> list[tuple[str, str, str]]:
        """(sku, name, category) to browse: what live campaigns want shoppers to have seen."""
        products = []
        for campaign in campaigns:
            intent = campaign.get("intent") or {}
            for sku in intent.get("skus", []):
                products.append((sku, f"{sku} (simulated)", (intent.get("categories") or [""])[0]))
            for category in intent.get("categories", []):
                products.append((f"{category.upper()}-1", f"{category} pick", category))
        return products or [("X200", "X200 headphones", "headphones")]

    def shopper(self, run: str, n: int, rng: random.Random) -> Shopper:
        consent = rng.choices(["opted_in", "unknown", "opted_out"], weights=[85, 10, 5])[0]
        return {
            "customer_id": f"SIM-{run}-{n}",
            "device_id": f"sim-{run}-{n}",
            "phone": simulation.fictional_phone(n),
            "consent": consent,
        }

    def setup_shoppers(
        self,
        api: Api,
        shoppers: list[Shopper],
        products: list[tuple[str, str, str]],
        rng: random.Random,
        totals: Counter[str],
    ) -> None:
        events = []
        for shopper in shoppers:
            status, body = api.call(
                "PUT",
                f"/api/v1/customers/{shopper['customer_id']}",
                {
                    "phone": shopper["phone"],
                    "first_name": rng.choice(["Léa", "Tom", "Nadia", "Karim", "Emma", "Hugo"]),
                    "timezone": "Europe/Paris",
                    "locale": "fr-FR",
                    "sms_consent": shopper["consent"],
                    "consent_source": "simulator",
                },
            )
            if status not in (200, 201):
                raise CommandError(f"Creating {shopper['customer_id']} answered {status}: {body}")
            device = {
                "device_id": shopper["device_id"],
                "customer_id": shopper["customer_id"],
                "platform": rng.choice(["ios", "android"]),
            }
            api.call("POST", "/api/v1/devices", device)
            sku, name, category = rng.choice(products)
            for view in range(rng.randint(1, 4)):
                events.append(
                    {
                        "event_id": f"{shopper['device_id']}-view-{view}",
                        "customer_id": shopper["customer_id"],
                        "type": "product_view",
                        "sku": sku,
                        "product_name": name,
                        "category": category,
                        "occurred_at": (
                            datetime.now(UTC) - timedelta(days=rng.uniform(0.1, 5))
                        ).isoformat(),
                    }
                )
        for first in range(0, len(events), BATCH):
            status, body = api.call(
                "POST", "/api/v1/events", {"events": events[first : first + BATCH]}
            )
            totals["events"] += body["accepted"] if status == 202 else 0

    # --- walking ------------------------------------------------------------------------

    def post_walk(
        self,
        api: Api,
        shopper: Shopper,
        fixes: list[simulation.Fix],
        store_beacons: list[dict[str, Any]],
        rng: random.Random,
        totals: Counter[str],
    ) -> None:
        pings = [
            {
                "device_id": shopper["device_id"],
                "latitude": fix.latitude,
                "longitude": fix.longitude,
                "accuracy": fix.accuracy,
                "recorded_at": fix.at.isoformat(),
            }
            for fix in fixes
        ]
        status, body = api.call("POST", "/api/v1/pings", {"pings": pings})
        totals["pings_sent"] += len(pings)
        if status == 202:
            totals["pings_accepted"] += body["accepted"]
            totals["pings_rejected"] += len(body["rejected"])
        else:
            raise CommandError(f"POST /api/v1/pings answered {status}: {body}")
        if not store_beacons:
            return
        sightings = [
            {
                "device_id": shopper["device_id"],
                "ibeacon": rng.choice(store_beacons),
                "rssi": rng.randint(-78, -58),
                "seen_at": (fix.at + timedelta(seconds=offset)).isoformat(),
            }
            for fix in fixes
            if fix.inside
            for offset in (0, 8, 16)
        ]
        if sightings:
            status, body = api.call("POST", "/api/v1/sightings", {"sightings": sightings})
            totals["sightings_sent"] += len(sightings)
            if status == 202:
                totals["sightings_accepted"] += body["accepted"]

    def progress(self, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total)
        self.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} shoppers", ending=""
        )
        self.stderr.flush()

    # --- the funnel ---------------------------------------------------------------------

    def report(
        self,
        api: Api,
        run: str,
        started: datetime,
        options: dict[str, Any],
        totals: Counter[str],
    ) -> None:
        prefix = f"SIM-{run}-"
        if options["base_url"]:
            deliveries = self.settled_deliveries(api, prefix, started)
        else:
            deliveries = self.deliveries(api, prefix, started)
        statuses = Counter(d["status"] for d in deliveries)
        reasons = Counter(d["reason"] for d in deliveries if d["reason"])
        sent = sum(statuses[s] for s in ("sent", "delivered", "undelivered"))
        where = options["base_url"] or "in-process"
        out = self.stdout.write
        walked = f"{options['shoppers']} shoppers walking {options['minutes']:g} minutes"
        out(f"Simulated {walked} ({where}).")
        out(f"  browsing events accepted   {totals['events']}")
        out(
            f"  pings sent / accepted      {totals['pings_sent']} / {totals['pings_accepted']}"
            f" ({totals['pings_rejected']} rejected)"
        )
        sightings = f"{totals['sightings_accepted']} of {totals['sightings_sent']}"
        out(f"  beacon sightings accepted  {sightings}")
        if options["base_url"]:
            # The API lists no presence events; only the database holds them.
            out("  presence events            (counted in-process only)")
        else:
            events = self.presence_events(prefix)
            listed = ", ".join(f"{kind} {n}" for kind, n in sorted(events.items())) or "none"
            out(f"  presence events            {listed}")
        out(f"  decisions                  {len(deliveries)}")
        for status_name, n in statuses.most_common():
            out(f"    {status_name:<24} {n}")
        for reason, n in reasons.most_common():
            out(f"      because {reason:<16} {n}")
        out(f"  SMS sent                   {sent}")

    def deliveries(self, api: Api, prefix: str, started: datetime) -> list[dict[str, Any]]:
        """The run's deliveries, newest first, read until the pages reach its start."""
        deliveries = []
        page = 1
        while True:
            status, body = api.call("GET", f"/api/v1/deliveries?page={page}")
            if status != 200:
                raise CommandError(f"GET /api/v1/deliveries answered {status}: {body}")
            mine = [d for d in body["results"] if (d["customer_id"] or "").startswith(prefix)]
            deliveries += mine
            oldest = body["results"][-1]["created_at"] if body["results"] else None
            if not body.get("next") or (oldest and oldest < started.isoformat()):
                break
            page += 1
        return deliveries

    def settled_deliveries(self, api: Api, prefix: str, started: datetime) -> list[dict[str, Any]]:
        """Against a server, the workers decide and send after the API answered: the
        deliveries once none is queued and none has changed for SETTLE_QUIET_SECONDS, or as
        they stand after SETTLE_MAX_SECONDS (the funnel then shows what is still queued)."""
        deliveries = self.deliveries(api, prefix, started)
        deadline = time.monotonic() + SETTLE_MAX_SECONDS
        changed_at = time.monotonic()
        self.stderr.write("Waiting for the server's workers to decide and send...")
        while time.monotonic() < deadline:
            time.sleep(SETTLE_POLL_SECONDS)
            again = self.deliveries(api, prefix, started)
            if _states(again) != _states(deliveries):
                deliveries, changed_at = again, time.monotonic()
            elif time.monotonic() - changed_at >= SETTLE_QUIET_SECONDS and not any(
                d["status"] == "queued" for d in deliveries
            ):
                break
        return deliveries

    def presence_events(self, prefix: str) -> Counter[str]:
        from promotions.models import PresenceEvent

        kinds = PresenceEvent.objects.filter(customer__external_id__startswith=prefix)
        return Counter(kinds.values_list("kind", flat=True))


def _states(deliveries: list[dict[str, Any]]) -> set[tuple[Any, str]]:
    return {(d["id"], d["status"]) for d in deliveries}
