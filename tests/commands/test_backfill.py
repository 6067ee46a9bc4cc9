"""``forwarder backfill`` from MoEngage data exports: killed halfway and run again, every event arrives, at most
one batch is sent twice."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from devkit.traffic import streams_requests
from tests.worker.test_worker_faults import sendable

BATCH = 1000  # FORWARDER_BATCH_MAX_MESSAGES: one export line is one message


def write_exports(folder: Path, total: int, files: int, seed: int) -> list[dict[str, Any]]:
    events = [e for body in streams_requests(total, seed=seed) for e in body["events"]]
    per_file = total // files
    for index in range(files):
        with gzip.open(folder / f"moe-export-{index:03d}.jsonl.gz", "wb") as handle:
            for n, event in enumerate(events[index * per_file : (index + 1) * per_file]):
                handle.write(orjson.dumps({"export_doc_id": f"doc-{index}-{n}", "event": event}) + b"\n")
    return events


def backfill_env(url: str, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FORWARDER_", "AMPLITUDE_"))}
    return {
        **clean,
        "AMPLITUDE_API_KEY": "test-key",
        "AMPLITUDE_API_URL": url,
        "FORWARDER_BATCH_MAX_MESSAGES": str(BATCH),
        "FORWARDER_STATE_DIR": str(tmp_path / "state"),
    }


def run_backfill(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "forwarder", "backfill", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_backfill_killed_halfway_resumes_sending_at_most_one_batch_again(amplitude, tmp_path: Path) -> None:
    service, url = amplitude
    exports = tmp_path / "exports"
    exports.mkdir()
    events = write_exports(exports, 100_000, 4, seed=31)
    deliverable = sendable(events)
    env = backfill_env(url, tmp_path)

    first = run_backfill(env, tmp_path, str(exports), "--rate", "0")
    deadline = time.monotonic() + 120
    while service.recorder.accepted < len(deliverable) // 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.poll() is None, first.communicate()[1][-2000:]
    first.send_signal(signal.SIGKILL)
    first.communicate()
    at_kill = service.recorder.accepted
    assert 0 < at_kill < len(deliverable)

    started = time.monotonic()
    second = run_backfill(env, tmp_path, str(exports), "--rate", "0")
    out, err = second.communicate(timeout=300)
    seconds = time.monotonic() - started
    assert second.returncode == 0, err.decode()[-2000:]

    accepted = service.recorder.by_insert_id
    assert set(accepted) == deliverable  # every deliverable event arrived, nothing else did
    resent = service.recorder.accepted - len(accepted)
    assert resent <= BATCH  # at most the one batch that was in flight at the kill
    summary = out.decode()
    assert re.search(r"^read \d+ events in \d+ messages: delivered \d+", summary, re.M), summary
    remaining = len(deliverable) - (at_kill - resent)
    print(
        f"\nbackfill: 100,000 events in 4 gzip files; SIGKILL after {at_kill} accepted; the second run "
        f"re-sent {resent} and took {seconds:.1f} s ({remaining / seconds:,.0f} deliverable events/s); "
        + summary.strip()
    )

    again = run_backfill(env, tmp_path, str(exports))
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0
    assert "read 0 events" in out.decode()  # done is done
    assert service.recorder.accepted - len(accepted) == resent


@pytest.mark.kafka
def test_dead_letters_go_to_the_topic_with_kafka_and_to_a_named_file_without(
    amplitude, kafka, topic_names, tmp_path: Path
) -> None:
    from forwarder.kafka.admin import create_topics
    from forwarder.kafka.dead_letters import header_map
    from tests.kafka_helpers import read_all

    service, url = amplitude
    good = {"event_code": "SMS_SENT", "event_uuid": "ok-1", "uid": "customer-1", "event_time": 1_700_000_000}
    bad = {"event_code": "SMS_SENT", "event_uuid": "bad-1", "uid": "customer-2", "event_time": "soon"}
    data = tmp_path / "saved.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps({"export_doc_id": str(i), "event": e}) for i, e in enumerate([good, bad])))
    env = backfill_env(url, tmp_path)

    without = run_backfill(env, tmp_path, str(data))
    out, err = without.communicate(timeout=120)
    assert without.returncode == 0, err.decode()
    [where] = re.findall(r"dead letters: (\S+)", out.decode())
    [letter] = [orjson.loads(line) for line in Path(where).read_bytes().splitlines()]
    assert letter["headers"]["reason"] == "invalid_time"
    assert orjson.loads(letter["value"])["event_uuid"] == "bad-1"

    dlq = topic_names("dlq")
    import asyncio

    asyncio.run(create_topics(kafka, {dlq: 1}))
    with_kafka = run_backfill(
        {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka, "FORWARDER_DLQ_TOPIC": dlq}, tmp_path, str(data), "--restart"
    )
    out, err = with_kafka.communicate(timeout=120)
    assert with_kafka.returncode == 0, err.decode()
    assert f"dead letters: the topic {dlq}" in out.decode()
    [record] = asyncio.run(read_all(kafka, dlq, expected=1))
    assert header_map(record.headers)["reason"] == "invalid_time"
    assert set(service.recorder.by_insert_id) == {"ok-1"}
