"""The REST API client (proxy/pdrest.py) against the strict fake (tests/support/fakepd_rest.py)
over real HTTP: the headers PagerDuty requires, classic pagination past one page, 429 with
ratelimit-reset and 500 retried, 4xx not retried, and the token never in an error."""

from __future__ import annotations

import time

import pytest

from proxy.pdrest import APIError, PagerDutyAPI
from tests.support.fakepd import FakePagerDuty, Received
from tests.support.fakepd_rest import FakePagerDutyREST

pytestmark = pytest.mark.e2e
KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def rest():
    events = FakePagerDuty()
    fake = FakePagerDutyREST(events)
    await fake.start()
    yield fake
    await fake.stop()


def triggered(fake: FakePagerDutyREST, n: int, prefix: str = "k") -> None:
    """n incidents, as if n triggers had been accepted (the Events API's side is not what
    is tested here)."""
    now = time.time()
    for i in range(n):
        fake.events.received.append(Received(now, "/v2/enqueue", {
            "routing_key": KEY, "event_action": "trigger", "dedup_key": f"{prefix}{i}",
            "payload": {"summary": f"alert {i}", "source": "test", "severity": "error"}}, 202))


async def test_open_incidents_read_in_pages_of_100_with_the_headers_pagerduty_requires(rest):
    triggered(rest, 250)
    rest.resolve("k7")
    api = PagerDutyAPI(rest.token, "oncall@example.com", rest.url, per_minute=6000)
    try:
        found = await api.open_incidents()
    finally:
        await api.close()
    assert len(found) == 249 and "k7" not in {i["incident_key"] for i in found}
    assert rest.calls("GET", "/incidents?") == 3  # 100 + 100 + 49
    assert rest.violations == []


async def test_a_429_waits_for_ratelimit_reset_and_a_500_is_tried_again(rest):
    triggered(rest, 1)
    rest.throttle, rest.reset_after, rest.fail = 1, 1, 1
    api = PagerDutyAPI(rest.token, "oncall@example.com", rest.url, backoff=0.05)
    try:
        t0 = time.monotonic()
        inc = await api.incident_for("k0")
        took = time.monotonic() - t0
    finally:
        await api.close()
    assert inc is not None and inc["status"] == "triggered"
    assert [s for _, _, s in rest.requests] == [429, 500, 200]
    assert took >= 1.0  # ratelimit-reset: 1


async def test_an_error_names_the_problem_never_the_token(rest):
    triggered(rest, 1)
    api = PagerDutyAPI("u+wrongToken999", "oncall@example.com", rest.url)
    with pytest.raises(APIError) as e:
        await api.abilities()
    await api.close()
    assert e.value.status == 401 and e.value.code == 2006 and "wrongToken" not in str(e.value)
    assert len(rest.requests) == 1  # a 4xx is not tried again
    api = PagerDutyAPI(rest.token, "", rest.url)  # a write without --pagerduty-from
    with pytest.raises(APIError) as e:
        await api.add_note("PINC0001", "hello")
    await api.close()
    assert e.value.status == 400 and "--pagerduty-from" in str(e.value)
    assert rest.calls("POST", "/incidents") == 0  # not sent at all
    api = PagerDutyAPI(rest.token, "stranger@example.com", rest.url)  # not a user of the account
    with pytest.raises(APIError) as e:
        await api.add_note("PINC0001", "hello")
    await api.close()
    assert e.value.status == 400 and e.value.code == 1008


async def test_the_newest_incident_of_a_key_is_the_one_found(rest):
    triggered(rest, 1)
    rest.resolve("k0")
    triggered(rest, 1)  # the same key again: a new incident
    api = PagerDutyAPI(rest.token, "oncall@example.com", rest.url)
    try:
        inc = await api.incident_for("k0")
        await api.add_note(inc["id"], "runbook: restart the pod")
        notes = await api.notes(inc["id"])
    finally:
        await api.close()
    assert inc["id"] == "PINC0002" and inc["status"] == "triggered"
    assert notes == ["runbook: restart the pod"] and rest.violations == []
