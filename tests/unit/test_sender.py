"""The sender's decision table and its backoff."""

from __future__ import annotations

import pytest

from proxy.durations import header_seconds
from proxy.sender import Outcome, Verdict, backoff, classify


@pytest.mark.parametrize("status,outcome,verdict", [
    (202, Outcome.SUCCESS, Verdict.DONE), (400, Outcome.INVALID, Verdict.DEAD),
    (401, Outcome.REJECTED, Verdict.DEAD), (403, Outcome.REJECTED, Verdict.DEAD),
    (404, Outcome.REJECTED, Verdict.DEAD), (413, Outcome.REJECTED, Verdict.DEAD),
    (429, Outcome.RATE_LIMITED, Verdict.PAUSE), (500, Outcome.SERVER_ERROR, Verdict.RETRY),
    (502, Outcome.SERVER_ERROR, Verdict.RETRY), (None, Outcome.NETWORK, Verdict.RETRY),
])
def test_classify(status, outcome, verdict):
    d = classify(status)
    assert (d.outcome, d.verdict) == (outcome, verdict)
    assert str(d.outcome) == outcome.value  # used directly as a metric label


def test_backoff_doubles_with_jitter_and_a_cap():
    for attempt in range(12):
        d = min(300.0, 1.0 * 2 ** attempt)
        for _ in range(20):
            assert d / 2 <= backoff(attempt, 1.0, 300.0) <= d


@pytest.mark.parametrize("headers,want", [
    ({"Retry-After": "7"}, 7.0), ({"Retry-After": "-3"}, 0.0),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None), ({}, None), (None, None),
])
def test_retry_after(headers, want):
    assert header_seconds(headers) == want
    assert header_seconds({"ratelimit-reset": "20"}, "ratelimit-reset") == 20.0  # PagerDuty's REST API
