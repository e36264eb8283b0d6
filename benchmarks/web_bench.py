"""Web console render times: the version page (with its lineage picture) and the blast-radius
page of a hub's biggest base, beside the JSON API calls that return the same data.

Issue 12's target: < 300 ms p95 per page on the project's 2-core machine, for the hub
benchmark's largest base at 100k versions (21,296 descendants at the default seed).

1. Generates the hub (:mod:`benchmarks.hubgen`, deterministic from ``--seed``) and
   bulk-loads it (:mod:`benchmarks.bulkload`: exactly the rows the service would write)
   into a fresh registry per backend.
2. Flags the model with the most descendants through the service (so every page shows an
   incident: its descendants infected, its deployments in the blast radius).
3. Serves ``create_app`` under uvicorn on loopback in this process, signs in through the
   sign-in form like a browser (session cookie, CSRF), and takes a reader's API token.
4. Times, over ``--requests`` rounds after two warm-up rounds, one request of each kind per
   round in turn (round-robin, so a busy moment hits all alike), on one keep-alive
   connection: wall time from sending the request to the last byte of the answer.

Run: ``.venv/bin/python -m benchmarks.web_bench`` (``--backends sqlite`` for one backend,
``--versions 20000`` for a quick run, ``--json`` for everything).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from sqlalchemy import Engine

from benchmarks import bulkload
from benchmarks.hubgen import generate
from benchmarks.lineage_bench import (
    ACTOR,
    DEFAULT_PG_URL,
    biggest_base,
    fresh_database,
    log,
    machine,
    postgres_version,
)
from registry.api import create_app
from registry.client import LocalRegistry
from registry.identity import Role
from registry.settings import Settings

TARGET_P95_S = 0.300
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@dataclass
class Endpoint:
    """One kind of request and what it took."""

    name: str
    path: str
    api: bool
    peer: str | None = None  # the API endpoint returning the same data
    seconds: list[float] = field(default_factory=list)
    bytes: int = 0

    def p(self, quantile: float) -> float:
        """A quantile of the timings (nearest rank)."""
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))]


@dataclass
class BackendRun:
    """Everything measured on one backend."""

    backend: str
    versions: int
    base: str
    descendants: int
    bulk_load_s: float
    flag_s: float
    endpoints: list[Endpoint]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, quantiles included."""
        data = asdict(self)
        for endpoint, saved in zip(self.endpoints, data["endpoints"], strict=True):
            saved["p50_ms"] = round(statistics.median(endpoint.seconds) * 1000, 1)
            saved["p95_ms"] = round(endpoint.p(0.95) * 1000, 1)
        return data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100_000, help="versions in the hub")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("MBOM_BENCH_POSTGRES_URL", DEFAULT_PG_URL),
        help="a PostgreSQL server URL; a fresh database is created on it",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=30, help="timed rounds")
    parser.add_argument("--workdir", type=Path, default=None, help="where SQLite files go")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


@contextmanager
def serving(engine: Engine, url: str) -> Iterator[str]:
    """The real app under uvicorn on a loopback port, in a thread; yields its base URL."""
    app = create_app(Settings(database_url=url), engine=engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise SystemExit(f"the server at {base} did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def sign_in(client: httpx.Client, token: str) -> None:
    """Sign in through the form, as a browser does (the session cookie stays in ``client``)."""
    form = client.get("/")
    found = _CSRF.search(form.text)
    if not found:
        raise SystemExit("the sign-in page has no CSRF token")
    answer = client.post("/", data={"token": token, "csrf": found.group(1), "next": "/"})
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")


def endpoints(base: str) -> list[Endpoint]:
    """The pages and the API calls that answer the same questions."""
    ref = quote(base, safe="/@")
    return [
        Endpoint("model page (with picture)", f"/models/{ref}", False, "API status"),
        Endpoint("lineage.svg alone", f"/models/{ref}/lineage.svg", False, "API status"),
        Endpoint("blast-radius page", f"/blast-radius/{ref}", False, "API blast-radius"),
        Endpoint("API status", f"/api/v1/artifacts/{ref}/status", True),
        Endpoint("API blast-radius", f"/api/v1/artifacts/{ref}/blast-radius?limit=50", True),
    ]


def measure(base_url: str, token: str, base: str, rounds: int) -> list[Endpoint]:
    """Round-robin timings of every endpoint (two warm-up rounds first)."""
    wanted = endpoints(base)
    with (
        httpx.Client(base_url=base_url, timeout=60) as browser,
        httpx.Client(
            base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {token}"}
        ) as api,
    ):
        sign_in(browser, token)
        for round_ in range(rounds + 2):
            for endpoint in wanted:
                client = api if endpoint.api else browser
                started = time.perf_counter()
                answer = client.get(endpoint.path)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise SystemExit(f"{endpoint.path}: {answer.status_code} {answer.text[:300]}")
                if round_ >= 2:
                    endpoint.seconds.append(elapsed)
                    endpoint.bytes = len(answer.content)
    return wanted


def run_backend(backend: str, args: argparse.Namespace) -> BackendRun:
    """Load, flag, serve and measure on one backend."""
    hub = generate(args.versions, seed=args.seed)
    with fresh_database(backend, args, f"web-{args.versions}") as engine:
        registry = LocalRegistry(engine, ACTOR)
        bulkload.create_teams(registry, hub)
        log(f"{backend}: bulk-loading {len(hub)} versions")
        started = time.perf_counter()
        bulkload.bulk_load(engine, hub, len(hub), actor=ACTOR)
        loaded = time.perf_counter() - started
        base_id, descendants = biggest_base(engine)
        base = hub.ref(base_id - 1)
        log(f"{backend}: loaded in {loaded:.1f} s; flagging {base} ({descendants} descendants)")
        started = time.perf_counter()
        registry.flag(base, reason="web_bench: the biggest base is compromised")
        flagged = time.perf_counter() - started
        token = registry.create_token(user="bench-reader", role=Role.READER).token
        assert token
        url = engine.url.render_as_string(hide_password=False)
        with serving(engine, url) as base_url:
            log(f"{backend}: {args.requests} rounds of {len(endpoints(base))} requests")
            measured = measure(base_url, token, base, args.requests)
    return BackendRun(backend, len(hub), base, descendants, loaded, flagged, measured)


def table(runs: list[BackendRun], host: dict[str, Any]) -> str:
    """The results as a Markdown table, with the page/API ratios."""
    lines = [
        f"Machine: {host['nproc']} CPUs ({host['cpu']}), Python {host['python']}, "
        f"SQLite {host['sqlite']}, {host.get('postgres', '')}; {host['date']}, "
        f"load average {' '.join(map(str, host['load_average']))} at the start.",
        "",
        "| backend | base (descendants) | request | p50 ms | p95 ms | max ms | KiB "
        "| p50 vs API | target p95 < 300 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        by_name = {e.name: e for e in run.endpoints}
        for e in run.endpoints:
            peer = by_name.get(e.peer or "")
            ratio = (
                f"{statistics.median(e.seconds) / statistics.median(peer.seconds):.2f}x"
                if peer
                else "–"
            )
            verdict = "–" if e.api else ("met" if e.p(0.95) < TARGET_P95_S else "**missed**")
            lines.append(
                f"| {run.backend} | {run.base} ({run.descendants:,}) | {e.name} "
                f"| {statistics.median(e.seconds) * 1000:.0f} | {e.p(0.95) * 1000:.0f} "
                f"| {max(e.seconds) * 1000:.0f} | {e.bytes / 1024:.1f} | {ratio} | {verdict} |"
            )
    lines.append("")
    lines.extend(
        f"{run.backend}: {run.versions:,} versions bulk-loaded in {run.bulk_load_s:.1f} s; "
        f"flagging the base took {run.flag_s:.2f} s."
        for run in runs
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON)."""
    args = parse_args(argv)
    host = machine()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "postgres" in backends:
        host["postgres"] = "PostgreSQL " + postgres_version(args.pg_url)
    runs = [run_backend(backend, args) for backend in backends]
    if args.json:
        print(json.dumps({"machine": host, "runs": [r.to_json() for r in runs]}, indent=2))
    else:
        print(table(runs, host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
