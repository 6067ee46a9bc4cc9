"""``cohorts pull`` against the local Amplitude service's Behavioral Cohorts API: request, poll, redirect,
gzip CSV, members by identity; the credentials never go to the file's host."""

from __future__ import annotations

import io

import httpx
import pytest
from pydantic import SecretStr

from devkit.amplitude import AmplitudeService
from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.cohorts.members import export_members
from forwarder.cohorts.pull import CohortExports, read_rows

BASE = "http://amplitude.local"


async def _no_sleep(seconds: float) -> None:
    return None


def exports(service: AmplitudeService, secret: str = "s3cret") -> CohortExports:  # noqa: S107
    api = DashboardAPI(
        BASE, SecretStr("test-key"), SecretStr(secret), sleep=_no_sleep, transport=httpx.ASGITransport(app=service.app)
    )
    return CohortExports(api, poll_s=0.01)


async def define(service: AmplitudeService, members: list[dict[str, object]]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url=BASE) as http:
        answer = await http.post("/_local/cohorts", json={"id": "c1", "name": "Buyers", "members": members})
        assert answer.status_code == 200


async def test_an_export_is_downloaded_without_credentials_and_read_as_members(tmp_path: object) -> None:
    service = AmplitudeService(api_keys={"test-key"}, secret_key="s3cret")
    service.cohorts.export_delay_s = 0.05
    await define(
        service,
        [
            {"user_id": "customer-1", "user_properties": {"moe_anonymous_id": "anon-1"}},
            {"user_id": None, "amplitude_id": 77, "user_properties": {"moe_anonymous_id": "anon-2"}},
            {"user_id": None, "amplitude_id": 78, "user_properties": {}},
        ],
    )
    client = exports(service)
    (cohort,) = await client.cohorts()
    assert (cohort.cohort_id, cohort.size) == ("c1", 3)
    assert cohort.last_computed > 0
    buffer = io.BytesIO()
    size = await client.download("c1", "moe_anonymous_id", buffer)  # type: ignore[arg-type]
    await client.aclose()
    assert size > 0
    assert buffer.getvalue()[:2] == b"\x1f\x8b"
    path = tmp_path / "export.csv.gz"  # type: ignore[operator]
    path.write_bytes(buffer.getvalue())
    members = list(export_members(read_rows(str(path)), "moe_anonymous_id", "moe_anonymous_id"))
    assert members == [("uid", "customer-1"), ("moe_anonymous_id", "anon-2"), None]
    assert service.cohorts.file_requests_with_credentials == 0


async def test_the_file_host_refuses_a_client_that_forwards_credentials() -> None:
    service = AmplitudeService(api_keys={"test-key"}, secret_key="s3cret")
    await define(service, [{"user_id": "customer-1"}])
    auth = ("test-key", "s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url=BASE, auth=auth) as http:
        request_id = (await http.get("/api/5/cohorts/request/c1")).json()["request_id"]
        service.cohorts.exports[request_id].ready_at = 0
        file = await http.get(f"/api/5/cohorts/request/{request_id}/file")
        assert file.status_code == 302
        leaked = await http.get(file.headers["location"])  # the naive way: same client, same credentials
    assert leaked.status_code == 400
    assert service.cohorts.file_requests_with_credentials == 1


async def test_wrong_credentials_are_one_line_that_names_the_settings_not_the_secret() -> None:
    service = AmplitudeService(api_keys={"test-key"}, secret_key="s3cret")
    client = exports(service, secret="not-the-secret")
    with pytest.raises(DashboardError) as raised:
        await client.cohorts()
    await client.aclose()
    assert "AMPLITUDE_SECRET_KEY" in str(raised.value)
    assert "not-the-secret" not in str(raised.value)
