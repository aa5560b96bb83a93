"""Matching pings against store fences: Passage's batch index beside the obvious designs,
measured in the same run on the same machine.

    .venv/bin/python bench/matching.py [--sizes 1000,10000,100000,1000000] [--batch 10000]

Baselines (here only, never in the product): a geopy geodesic loop over every fence, Redis
GEOSEARCH on a geo set of the fences (where Redis answers on 127.0.0.1:6379), and PostGIS
ST_DWithin on a GiST index (where the extension is installed: `make postgis`).
Correctness is checked as it goes: the batch index must find what the scalar index finds.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ensure_database, per_item_us
from promotions.geo import Fence, FenceIndex
from promotions.geo_index import BatchFenceIndex

REACH_M = 500.0
# Mainland France, roughly: where a national retailer's fences are.
SOUTH, NORTH, WEST, EAST = 42.5, 51.0, -4.5, 8.0


def make_fences(count: int, rng: np.random.Generator) -> list[Fence]:
    lat = rng.uniform(SOUTH, NORTH, count)
    lon = rng.uniform(WEST, EAST, count)
    radius = rng.uniform(30, 150, count)
    return [
        Fence(i, float(a), float(o), float(r), None)
        for i, (a, o, r) in enumerate(zip(lat, lon, radius, strict=True))
    ]


def make_points(
    fences: list[Fence], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Half the pings near a store (as shoppers' are), half anywhere."""
    near = count // 2
    chosen = rng.integers(0, len(fences), near)
    lat = np.concatenate(
        [
            np.array([fences[i].latitude for i in chosen]) + rng.normal(0, 0.003, near),
            rng.uniform(SOUTH, NORTH, count - near),
        ]
    )
    lon = np.concatenate(
        [
            np.array([fences[i].longitude for i in chosen]) + rng.normal(0, 0.004, near),
            rng.uniform(WEST, EAST, count - near),
        ]
    )
    return lat, lon


def bench_geopy(fences: list[Fence], lat: np.ndarray, lon: np.ndarray, budget_s: float) -> float:
    from geopy.distance import geodesic

    pings = 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s or pings == 0:
        point = (float(lat[pings]), float(lon[pings]))
        _ = [
            f.key
            for f in fences
            if geodesic(point, (f.latitude, f.longitude)).meters - f.radius_m <= REACH_M
        ]
        pings += 1
    return (time.perf_counter() - start) / pings * 1e6


def bench_redis(fences: list[Fence], lat: np.ndarray, lon: np.ndarray) -> float | None:
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, db=14, socket_connect_timeout=1)
        client.ping()
    except Exception:
        return None
    client.delete("fences")
    for start in range(0, len(fences), 20_000):
        chunk = fences[start : start + 20_000]
        values = []
        for f in chunk:
            values += [f.longitude, f.latitude, f.key]
        client.execute_command("GEOADD", "fences", *values)
    # Redis knows points, not circles: search the reach plus the largest radius, as a
    # Redis-based design must, then it would still have to measure each candidate.
    radius = REACH_M + 150

    def run() -> None:
        pipe = client.pipeline(transaction=False)
        for a, o in zip(lat.tolist(), lon.tolist(), strict=True):
            pipe.execute_command("GEOSEARCH", "fences", "FROMLONLAT", o, a, "BYRADIUS", radius, "m")
        pipe.execute()

    result = per_item_us(run, len(lat), repeat=3)
    client.delete("fences")
    return result


POSTGIS_URL = "postgres://postgres@127.0.0.1:5432/passage_bench_postgis"
# A batch query of this many points: a batch of 10,000 at 1e6 fences takes seconds.
POSTGIS_POINTS = 1000


def bench_postgis(fences: list[Fence], lat: np.ndarray, lon: np.ndarray) -> float | None:
    """ST_DWithin on a GiST index of geography points, the batch's points in one query
    joined to the fences (as a PostGIS design would), exact on the spheroid: the circle is
    searched at its largest radius plus the reach, then each candidate measured."""
    try:
        import psycopg

        ensure_database(POSTGIS_URL)
        connection = psycopg.connect(POSTGIS_URL, autocommit=True, connect_timeout=2)
        connection.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except Exception:
        return None
    with connection:
        connection.execute("DROP TABLE IF EXISTS fences")
        connection.execute(
            "CREATE TABLE fences (id integer, geog geography(Point, 4326), radius float8)"
        )
        with connection.cursor().copy("COPY fences (id, geog, radius) FROM STDIN") as copy:
            for f in fences:
                copy.write_row((f.key, f"SRID=4326;POINT({f.longitude} {f.latitude})", f.radius_m))
        connection.execute("CREATE INDEX ON fences USING gist (geog)")
        connection.execute("ANALYZE fences")
        query = (
            "SELECT p.n, f.id FROM unnest(%s::float8[], %s::float8[]) WITH ORDINALITY "
            "AS p(lat, lon, n) JOIN fences f ON ST_DWithin(f.geog, "
            "ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography, %s) "
            "WHERE ST_Distance(f.geog, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography)"
            " - f.radius <= %s"
        )
        points = lat[:POSTGIS_POINTS].tolist(), lon[:POSTGIS_POINTS].tolist()

        def run() -> None:
            connection.execute(query, [*points, REACH_M + 150, REACH_M]).fetchall()

        result = per_item_us(run, len(points[0]), repeat=3)
        connection.execute("DROP TABLE fences")
    return result


def check(batch: BatchFenceIndex, scalar: FenceIndex, lat: np.ndarray, lon: np.ndarray) -> None:
    index, keys, _ = batch.nearby_batch(lat, lon)
    for n in range(len(lat)):
        expected = {k for k, _ in scalar.nearby(float(lat[n]), float(lon[n]))}
        found = set(keys[index == n].tolist())
        assert found == expected, (n, found, expected)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int, batch_size: int, rng: np.random.Generator) -> dict:
    fences = make_fences(size, rng)
    lat, lon = make_points(fences, batch_size, rng)
    start = time.perf_counter()
    batch = BatchFenceIndex(fences, REACH_M)
    figures = {"build_s": time.perf_counter() - start, "index_mb": batch.nbytes / 1e6}
    figures["passage"] = per_item_us(lambda: batch.nearby_batch(lat, lon), batch_size)
    figures["candidates"] = len(batch.nearby_batch(lat, lon)[0]) / batch_size
    figures["scalar"] = None
    if size <= 100_000:
        scalar = FenceIndex(fences, REACH_M)
        few_lat, few_lon = lat[:2000], lon[:2000]
        check(batch, scalar, few_lat, few_lon)
        pairs = list(zip(few_lat.tolist(), few_lon.tolist(), strict=True))
        figures["scalar"] = per_item_us(lambda: [scalar.nearby(a, o) for a, o in pairs], 2000, 3)
    figures["redis"] = bench_redis(fences, lat, lon)
    figures["postgis"] = bench_postgis(fences, lat, lon)
    figures["geopy"] = bench_geopy(fences, lat, lon, budget_s=3.0) if size <= 10_000 else None
    return figures


def row(size: int, f: dict) -> str:
    def cell(value: float | None, width: int, digits: int = 2) -> str:
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    def ratio(value: float | None, width: int) -> str:
        if value is None:
            return f"{'-':>{width}}"
        return f"{value / f['passage']:>{width},.0f}"

    return (
        f"{size:>9,} {cell(f['passage'], 10, 3)} {cell(f['scalar'], 9)} {cell(f['redis'], 9)}"
        f" {cell(f['postgis'], 9)} {cell(f['geopy'], 12, 0)} {ratio(f['redis'], 8)}"
        f" {ratio(f['postgis'], 10)} {ratio(f['geopy'], 10)}"
        f" {f['index_mb']:>9.1f} {f['build_s']:>8.2f} {f['candidates']:>9.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print(
        f"Matching pings against fences within {REACH_M:.0f} m, exact,"
        f" in batches of {args.batch:,}:"
    )
    print("µs per ping, median of 5 runs (Redis 3). 'x' columns: how many times faster Passage is.")
    print(
        f"{'fences':>9} {'passage':>10} {'scalar':>9} {'redis':>9} {'postgis':>9} {'geopy':>12}"
        f" {'x redis':>8} {'x postgis':>10} {'x geopy':>10} {'index MB':>9} {'build s':>8}"
        f" {'cand/ping':>9}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        print(row(size, measure(size, args.batch, rng)), flush=True)
    print(f"Peak RSS of this process: {rss_mb():.0f} MB (the 1e6 Fence objects included).")
    print("scalar: geo.FenceIndex, one ping at a time (measured to 1e5 fences, and checked equal).")
    print("geopy: measured to 1e4 fences; beyond, a loop takes minutes a ping.")
    print(
        f"postgis: ST_DWithin on a GiST index, {POSTGIS_POINTS:,} pings a query"
        " ('-': the postgis extension is not installed; `make postgis` installs it)."
    )


if __name__ == "__main__":
    main()
