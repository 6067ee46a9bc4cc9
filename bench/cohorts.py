"""``make bench-cohorts``: the cohort worker with a large cohort, against the local MoEngage service at its
300 requests a minute.

1. first sync: a cohort of ``--members`` (2,000,000) pulled as a snapshot and sent to an empty segment;
2. diff: a second snapshot of the same size where ``--churn`` members left and as many joined, diffed against
   the state the worker holds (the worker is restarted before it, so it also recovers the state from the changelog).

Measured: members synced per second (first sync and diff), requests per minute MoEngage saw, the worker's peak
RSS (VmHWM, so a short peak is not missed) and the time it took to recover its table. The last line is JSON.

    .venv/bin/python -m bench.cohorts [--members 2000000] [--churn 100000]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.run import peak_rss_mb
from devkit.cohorts_demo import cohort_rig
from devkit.kafka import broker_for, stop_pid

COHORT = "big1"


def members(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"user_id": f"customer-{i:08d}"} for i in range(start, start + count)]


def wait_synced(rig: Any, expected: int, timeout_s: float, worker: Any) -> float:
    """Seconds until the segment holds ``expected`` members and every record is committed."""
    started = time.monotonic()
    while True:
        stats = httpx.get(f"{rig.moengage_url}/_local/stats", timeout=60).json()
        if stats["segments"].get(COHORT) == expected:
            break
        if time.monotonic() - started > timeout_s or worker.poll() is not None:
            raise TimeoutError(f"segment at {stats['segments'].get(COHORT)} of {expected}\n{rig.worker_log()[-3000:]}")
        time.sleep(0.5)
    import asyncio

    from devkit.observe import wait_until_committed

    asyncio.run(wait_until_committed(rig.servers, rig.topic, rig.group, timeout_s))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=2_000_000)
    parser.add_argument("--churn", type=int, default=100_000)
    parser.add_argument("--timeout-s", type=float, default=1800)
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with (
        broker_for("bench") as servers,
        tempfile.TemporaryDirectory() as tmp,
        cohort_rig(servers, Path(tmp), partitions=1) as rig,
    ):
        first = members(args.members)
        rig.moengage.known |= {("uid", m["user_id"]) for m in members(args.members + args.churn)}
        rig.define_cohort({"id": COHORT, "name": "Big cohort", "members": first})
        worker = rig.start_worker()
        pulled_at = time.monotonic()
        pull = rig.command("pull", "--cohort", COHORT)
        assert pull.returncode == 0, pull.stderr
        pull_s = time.monotonic() - pulled_at
        first_s = wait_synced(rig, args.members, args.timeout_s, worker)
        first_rss = peak_rss_mb(worker.pid)
        requests_first = sum(rig.moengage.responses.values())
        stop_pid(worker.pid, 30, worker)

        second = members(args.members - args.churn, start=args.churn) + members(args.churn, start=args.members)
        rig.define_cohort({"id": COHORT, "members": second})
        worker = rig.start_worker()
        restarted = time.monotonic()
        pull = rig.command("pull", "--cohort", COHORT)
        assert pull.returncode == 0, pull.stderr
        diff_s = wait_synced(rig, len(second), args.timeout_s, worker)
        segment = set(httpx.get(f"{rig.moengage_url}/_local/segments", timeout=120).json()[COHORT]["members"])
        wanted = {f"uid:{m['user_id']}" for m in second}
        exact = segment == wanted
        if not exact:
            print(f"segment: {len(segment - wanted)} extra, {len(wanted - segment)} missing", file=sys.stderr)
            print(rig.worker_log(1)[-3000:], file=sys.stderr)
            Path("/tmp/cohort-worker-1.log").write_text(rig.worker_log(1))
        diff_rss = peak_rss_mb(worker.pid)
        since_restart_s = time.monotonic() - restarted
        requests_total = sum(rig.moengage.responses.values())
        stop_pid(worker.pid, 30, worker)
    summary = {
        "members": args.members,
        "churn": args.churn,
        "pull_s": round(pull_s, 1),
        "first_sync_s": round(first_s, 1),
        "first_sync_members_per_s": round(args.members / (first_s + pull_s)),
        "first_sync_requests": requests_first,
        "first_sync_requests_per_minute": round(requests_first / (first_s + pull_s) * 60, 1),
        "first_sync_peak_rss_mb": round(first_rss, 1),
        "diff_s": round(diff_s, 1),
        "diff_restart_to_synced_s": round(since_restart_s, 1),
        "diff_members_sent": 2 * args.churn,
        "diff_requests": requests_total - requests_first,
        "diff_peak_rss_mb": round(diff_rss, 1),
        "segment_exact": exact,
        "responses": dict(rig.moengage.responses),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
