"""A worker processing stored pings (presence, then decisions) in batches, beside the obvious
design of one task per ping, measured in the same run on PostgreSQL.

    .venv/bin/python bench/worker.py [--customers 5000] [--stores 1000] [--rounds 6]

The pings change no presence (shoppers walking about town, away from the stores): the
common case, and the floor of the worker's cost. Queries per batch are counted.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/passage_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

from bench.common import ensure_database


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from customers.models import Customer, Device, SmsConsent
    from promotions import decisions
    from promotions.models import (
        Campaign,
        CampaignStatus,
        LocationBatch,
        Ping,
        PresenceEvent,
        Store,
    )

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    rng = np.random.default_rng(3)
    lat = rng.uniform(42.5, 51.0, args.stores)
    lon = rng.uniform(-4.5, 8.0, args.stores)
    stores = Store.objects.bulk_create(
        Store(
            code=f"S{n}",
            name=f"Store {n}",
            latitude=a,
            longitude=o,
            radius_m=80,
            timezone="Europe/Paris",
        )
        for n, (a, o) in enumerate(zip(lat.tolist(), lon.tolist(), strict=True))
    )
    campaign = Campaign.objects.create(
        name="Walk-in", status=CampaignStatus.ACTIVE, offer_template="Hi {first_name}: {code}"
    )
    campaign.stores.set(stores[:10])
    customers = Customer.objects.bulk_create(
        Customer(
            external_id=f"C{n}",
            phone=f"+336{10_000_000 + n}",
            sms_consent=SmsConsent.OPTED_IN,
            timezone="Europe/Paris",
        )
        for n in range(args.customers)
    )
    devices = Device.objects.bulk_create(
        Device(device_id=f"d{n}", customer=c) for n, c in enumerate(customers)
    )
    start_at = timezone.now() - timedelta(hours=2)

    home_lat = rng.uniform(42.5, 51.0, len(devices))
    home_lon = rng.uniform(-4.5, 8.0, len(devices))

    def store_round(round_number: int, batch_size: int) -> list[LocationBatch]:
        """One ping from every device, a walk of a few hundred metres from its last one
        (a faster move would be a teleport, marked suspicious), stored in batches as ingest
        stores them."""
        at = start_at + timedelta(minutes=5 * round_number)
        points_lat = home_lat + rng.uniform(-0.002, 0.002, len(devices))
        points_lon = home_lon + rng.uniform(-0.003, 0.003, len(devices))
        rows = Ping.objects.bulk_create(
            Ping(device=d, latitude=a, longitude=o, accuracy=15, recorded_at=at)
            for d, a, o in zip(devices, points_lat.tolist(), points_lon.tolist(), strict=True)
        )
        return LocationBatch.objects.bulk_create(
            LocationBatch(ping_ids=[row.id for row in rows[first : first + batch_size]])
            for first in range(0, len(rows), batch_size)
        )

    # Warm up: tracks exist, the index is built, as on a worker that has been running.
    [warm_up] = store_round(0, len(devices))
    decisions.process_location_batch(batch_id=warm_up.pk, now=timezone.now())
    # Statistics, as autovacuum keeps them on a live database: the planner then reads a
    # batch's pings by primary key, not by scanning a table it takes for a few rows.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    rates, queries = [], []
    for round_number in range(1, args.rounds + 1):
        for batch in store_round(round_number, args.batch):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                decisions.process_location_batch(batch_id=batch.pk, now=timezone.now())
                rates.append(len(batch.ping_ids) / (time.perf_counter() - started))
            queries.append(len(captured.captured_queries))

    singles = store_round(args.rounds + 1, 1)[:500]
    started = time.perf_counter()
    for batch in singles:
        decisions.process_location_batch(batch_id=batch.pk, now=timezone.now())
    single_rate = len(singles) / (time.perf_counter() - started)
    batched_rate = statistics.median(rates)
    changed = PresenceEvent.objects.count() + Ping.objects.filter(suspicious=True).count()
    if changed:
        raise SystemExit(f"{changed} pings changed presence or were suspicious; fix the data.")

    print(
        f"Worker: pings that change no presence; {args.customers:,} customers, "
        f"{args.stores:,} stores, PostgreSQL, one process (one core); batches: the median "
        f"of {len(rates)}."
    )
    print(f"{'design':<32} {'pings/s':>10} {'queries/batch':>14} {'ratio':>7}")
    print(f"{'one task per ping (baseline)':<32} {single_rate:>10,.0f} {'-':>14} {1:>7.1f}")
    print(
        f"{'batches of ' + format(args.batch, ','):<32} {batched_rate:>10,.0f}"
        f" {max(queries):>14} {batched_rate / single_rate:>7.1f}"
    )


if __name__ == "__main__":
    main()
