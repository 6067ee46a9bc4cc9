"""The cohort half's check: MoEngage's credentials, with a request that changes nothing.

MoEngage has no read-only endpoint for the Cohort Sync API, so the check posts an empty body to it: MoEngage
authenticates first (401 for a wrong workspace id or key, 403 for a suspended account) and then refuses the body
with 400; nothing is added or removed. The local MoEngage service answers in the same order.
"""

from __future__ import annotations

import httpx

from forwarder.checks import Finding
from forwarder.cohorts.moengage import PATH as SYNC_PATH
from forwarder.settings import Settings


async def moengage(settings: Settings) -> list[Finding]:
    moengage = settings.moengage
    if moengage.workspace_id is None or moengage.data_api_key is None:
        return [
            Finding("moengage", True, "not configured (MOENGAGE_WORKSPACE_ID, MOENGAGE_DATA_API_KEY): cohort sync off")
        ]
    auth = (moengage.workspace_id, moengage.data_api_key.get_secret_value())
    url = moengage.base_url + SYNC_PATH
    try:
        async with httpx.AsyncClient(timeout=moengage.timeout_s) as http:
            answer = await http.post(url, json={}, auth=auth, headers={"MOE-APPKEY": moengage.workspace_id})
    except httpx.HTTPError as exc:
        return [Finding("moengage", False, f"no answer from {moengage.base_url} ({type(exc).__name__})")]
    if answer.status_code == 400:
        return [Finding("moengage", True, f"workspace {moengage.workspace_id} accepted at {moengage.base_url}")]
    if answer.status_code == 401:
        problem = "refused MOENGAGE_WORKSPACE_ID / MOENGAGE_DATA_API_KEY (check MOENGAGE_DATA_CENTER too)"
    elif answer.status_code == 403:
        problem = "the account is suspended or not allowed the Cohort Sync API"
    else:
        problem = f"HTTP {answer.status_code}"
    return [Finding("moengage", False, f"{moengage.base_url}: {problem}")]


COHORT_CHECKS = (moengage,)
