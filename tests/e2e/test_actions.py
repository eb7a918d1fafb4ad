"""Actions on PagerDuty's incident events through the real CLI, against strict fakes of
Slack, Jira and Statuspage over real HTTP (tests/support/fake_targets.py): a signed
incident.triggered makes one Slack message, one Jira issue, one Statuspage incident and
component change; incident.resolved the comment, the transition and the restore; with the
targets failing (500, 429 and 420 with Retry-After) for a while, deliveries repeated and a
restart in between, each is done once. A 4xx dead-letters with the reason; two replicas on
one Redis act once; secrets never show."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT, wait_for, write_rules
from tests.e2e.test_loop import SECRET, deliver, envelope, fire, triggers
from tests.support.fake_targets import FakeTargets
from tests.support.net import free_port, wait_port

pytestmark = pytest.mark.e2e

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 300ms
  group_interval: 1s
  repeat_interval: 1h
actions:
  - name: slack-oncall
    on: [incident.triggered, incident.acknowledged, incident.resolved]
    slack: {url: "${SLACK_URL}"}
  - name: jira-ops
    on: [incident.triggered, incident.resolved]
    match: {labels: {alertname: Down}}
    jira: {site: "${JIRA_SITE}", project: OPS, issue_type: Bug, email: bot@example.com,
           token: "${JIRA_TOKEN}", done: %(done)s}
  - name: status
    on: [incident.triggered, incident.resolved]
    match: {service: API Service, urgency: high}
    statuspage: {page: pg1, components: [cmp1], api_key: "${SP_KEY}", url: "${SP_URL}", incident: true}
  - name: database-team
    on: [incident.triggered]
    match: {service: Database}
    webhook: {url: "${SP_URL}/nowhere", body: '{"incident": "{{ incident.id }}"}'}
"""


@pytest.fixture
async def targets():
    t = FakeTargets()
    await t.start()
    yield t
    await t.stop()


def env_of(t: FakeTargets, slack_url: str | None = None) -> dict[str, str]:
    return {"SLACK_URL": slack_url or t.slack_url, "JIRA_SITE": t.url, "JIRA_TOKEN": t.jira_token,
            "SP_KEY": t.statuspage_key, "SP_URL": t.url + "/v1"}


async def serve(tmp_path, fake_pd, proxy_process, t: FakeTargets, store: str, name: str = "proxy",
                done: str = "Done", slack_url: str | None = None) -> tuple[str, object]:
    port = free_port()
    rules = write_rules(tmp_path / "rules", RULES % {"done": done})
    proc = proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--upstream", fake_pd.url,
                         "--store", store, "--pagerduty-webhook-secret", SECRET, name=name,
                         env=env_of(t, slack_url))
    await asyncio.to_thread(wait_port, port)
    return f"http://127.0.0.1:{port}", proc


def secrets_of(t: FakeTargets) -> list[str]:
    return [t.slack_path.rsplit("/", 1)[1], t.jira_token, t.statuspage_key]


async def test_trigger_and_resolve_act_once_through_failures_repeats_and_a_restart(
        tmp_path, fake_pd, proxy_process, targets):
    t = targets
    store = f"sqlite://{tmp_path / 'state.db'}"
    base, first = await serve(tmp_path, fake_pd, proxy_process, t, store)
    await fire(base, "web1")
    await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=10)
    key = triggers(fake_pd)[0]["dedup_key"]
    t.fail("slack", 2, 500)
    t.fail("slack", 1, 429, retry_after="1")
    t.fail("jira", 1, 429, retry_after="1")
    t.fail("statuspage", 1, 420, retry_after="1")
    status, answer = await deliver(base, envelope("triggered", key, 1), webhook_id="w-1")
    assert status == 200 and sorted(answer["actions"]) == ["jira-ops", "slack-oncall", "status"]
    status, answer = await deliver(base, envelope("triggered", key, 1), webhook_id="w-1")  # a retry
    assert status == 200 and answer["actions"] == []
    await wait_for(lambda: len(t.slack) == 1 and len(t.issues) == 1 and t.components["cmp1"] == "major_outage",
                   timeout=30)
    message = t.slack[0]
    assert "A little bump in the road" in message["text"] and "Triggered" in message["text"]
    assert "https://acme.pagerduty.com/incidents/PGR0VU2" in orjson_text(message["blocks"])
    issue = t.issues["OPS-1"]
    assert issue.fields["summary"] == "[SEV1] A little bump in the road"  # P1
    assert issue.fields["issuetype"] == {"name": "Bug"} and "SEV1" in issue.fields["labels"]
    assert len(t.sp_incidents) == 1

    # a restart between the trigger and the resolve; Slack fails once more meanwhile
    first.stop()
    base, _ = await serve(tmp_path, fake_pd, proxy_process, t, store, name="again")
    t.fail("slack", 1, 500)
    t.fail("jira", 1, 500)
    for wid in ("w-2", "w-3"):  # the same event twice, under two delivery ids
        status, answer = await deliver(base, envelope("resolved", key, 2), webhook_id=wid)
        assert status == 200
    await wait_for(lambda: len(t.slack) == 2 and issue.status == "Done" and t.components["cmp1"] == "operational"
                   and next(iter(t.sp_incidents.values()))["status"] == "resolved", timeout=30)
    await asyncio.sleep(3)  # nothing more comes
    assert len(t.slack) == 2 and "Resolved" in t.slack[1]["text"]
    assert len(t.issues) == 1 and len(issue.comments) == 1
    comment = issue.comments[0]["content"][0]["content"][0]["text"]
    assert comment.startswith("Resolved in PagerDuty by Tenex Engineer after ") and " d " in comment
    assert t.component_log == [("cmp1", "major_outage"), ("cmp1", "operational")]
    assert len(t.sp_incidents) == 1
    assert t.count("slack", 500) == 3 and t.count("slack", 429) == 1 and t.count("statuspage", 420) == 1
    assert t.violations == []
    logs = (tmp_path / "proxy.log").read_text() + (tmp_path / "again.log").read_text()
    assert logs.count('"action done"') == 6 and "nowhere" not in logs  # (database-team: not matched)
    for secret in secrets_of(t):
        assert secret not in logs


def orjson_text(v: object) -> str:
    return orjson.dumps(v).decode()


def deadletters(base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", "deadletter", "list", "--url", base], check=False,
                          capture_output=True, text=True, cwd=ROOT, timeout=30, env=dict(os.environ))


async def test_a_4xx_dead_letters_the_action_with_its_reason(tmp_path, fake_pd, proxy_process, targets):
    t = targets
    gone = t.url + "/services/T000/B000/ARCHIVEDxxxxxxxxxxxxxxxx"  # not the fake's hook: 404
    base, _ = await serve(tmp_path, fake_pd, proxy_process, t, "memory://", done="Closed", slack_url=gone)
    await fire(base, "web1")
    await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=10)
    key = triggers(fake_pd)[0]["dedup_key"]
    await deliver(base, envelope("triggered", key, 1))
    await wait_for(lambda: len(t.issues) == 1, timeout=10)
    await deliver(base, envelope("resolved", key, 2))
    done = None
    for _ in range(50):
        done = await asyncio.to_thread(deadletters, base)
        if done.stdout.count("\naction") + done.stdout.startswith("action") >= 3:
            break
        await asyncio.sleep(0.2)
    assert done is not None and done.returncode == 0
    lines = [x for x in done.stdout.splitlines() if x.startswith("action")]
    slack = [x for x in lines if "slack-oncall" in x]
    jira = [x for x in lines if "jira-ops" in x]
    assert len(slack) == 2 and all("HTTP 404: channel_not_found" in x and "1 tries" in x for x in slack)
    assert len(jira) == 1 and "has no transition to 'Closed' (available: Start -> In Progress, Resolve -> Done)" in jira[0]
    assert "ARCHIVED" not in done.stdout and t.count("slack") == 2  # no retry of a 4xx
    assert t.issues["OPS-1"].status == "To Do" and len(t.issues["OPS-1"].comments) == 1


async def test_two_replicas_on_one_redis_act_once(tmp_path, fake_pd, proxy_process, targets, redis_server):
    t = targets
    store = redis_server.url
    (a, _), (b, _) = [await serve(tmp_path / n, fake_pd, proxy_process, t, store, name=n) for n in "ab"]
    await fire(a, "web1")
    await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=10)
    key = triggers(fake_pd)[0]["dedup_key"]
    body = envelope("triggered", key, 1)
    answers = await asyncio.gather(deliver(a, body), deliver(b, body))  # two subscriptions
    # each action is queued by one of them (which one, per action, is a race): once in all
    assert sorted(answers[0][1]["actions"] + answers[1][1]["actions"]) == ["jira-ops", "slack-oncall", "status"]
    await wait_for(lambda: len(t.slack) == 1 and len(t.issues) == 1 and len(t.sp_incidents) == 1, timeout=20)
    await asyncio.sleep(2)
    assert len(t.slack) == 1 and len(t.issues) == 1 and len(t.sp_incidents) == 1 and t.violations == []


def check(tmp_path, text: str) -> subprocess.CompletedProcess[str]:
    rules = write_rules(tmp_path / "r", text)
    return subprocess.run([sys.executable, "-m", "proxy", "check", str(rules)], check=False, capture_output=True,
                          text=True, cwd=ROOT, timeout=30, env={**os.environ, "HOOK": "https://hooks.example.com/x"})


@pytest.mark.parametrize("action,says", [
    ("{name: s, on: [incident.triggered], slack: {url: 'https://hooks.slack.com/services/T/B/X'}}",
     "slack.url: a secret is given as ${VAR}"),
    ("{name: s, on: [incident.opened], slack: {url: '${HOOK}'}}", "on: a list of PagerDuty webhook event types"),
    ("{name: s, on: [incident.triggered]}", "exactly one of webhook, slack, jira, statuspage (got 0)"),
    ("{name: s, on: [incident.triggered], slack: {url: '${HOOK}', text: '{{ incident | nosuch }}'}}",
     "nosuch"),
    ("{name: s, on: [incident.triggered], statuspage: {page: p, components: [c], api_key: '${HOOK}', "
     "on_trigger: down}}", "statuspage.on_trigger: 'down' is not one of"),
    ("{name: s, on: [incident.triggered], match: {title: '(unclosed'}, slack: {url: '${HOOK}'}}",
     "match.title: not a regex"),
])
def test_check_names_what_is_wrong_with_an_action(tmp_path, action, says):
    done = check(tmp_path, "defaults:\n  routing_key: ${PD_ROUTING_KEY}\nactions:\n  - " + action + "\n")
    assert done.returncode == 1 and says in done.stderr and "rules.yml:" in done.stderr, done.stderr


def doctor(tmp_path, fake_pd, t: FakeTargets, env: dict[str, str], secret: bool = True) -> subprocess.CompletedProcess[str]:
    rules = write_rules(tmp_path / "rules", RULES % {"done": "Done"})
    args = ["--rules", str(rules), "--upstream", fake_pd.url, "--store", "memory://"]
    args += ["--pagerduty-webhook-secret", SECRET] if secret else []
    return subprocess.run([sys.executable, "-m", "proxy", "doctor", *args], check=False, capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env={**os.environ, **env})


async def test_doctor_checks_each_action_target_without_posting(tmp_path, fake_pd, targets):
    t = targets
    done = await asyncio.to_thread(doctor, tmp_path, fake_pd, t, env_of(t))
    assert done.returncode == 0, done.stdout
    ok = [x for x in done.stdout.splitlines() if x.startswith("ok    action")]
    assert [x.split(":")[0] for x in ok] == ["ok    action slack-oncall", "ok    action jira-ops",
                                             "ok    action status", "ok    action database-team"]
    assert t.slack == [] and t.issues == {} and t.component_log == []  # nothing posted
    broken = {**env_of(t, t.url + "/services/T000/B000/GONE"), "JIRA_TOKEN": "revoked", "SP_KEY": "wrong-key-000"}
    done = await asyncio.to_thread(doctor, tmp_path, fake_pd, t, broken, secret=False)
    fails = [x for x in done.stdout.splitlines() if x.startswith("FAIL")]
    assert done.returncode == 1 and [x.split(":")[0] for x in fails] == [
        "FAIL  PagerDuty webhooks", "FAIL  action slack-oncall", "FAIL  action jira-ops", "FAIL  action status"]
    assert "404 channel_not_found" in fails[1] and "401" in fails[2] and "401" in fails[3]
    for secret in ("GONE", "revoked", "wrong-key-000"):
        assert secret not in done.stdout


RULE_TEST = """
rule_files: [rules.yml]
env: {SLACK_URL: "https://hooks.slack.com/services/T0/B0/x", JIRA_SITE: "https://acme.atlassian.net",
      JIRA_TOKEN: t, SP_KEY: k, SP_URL: "https://api.statuspage.io/v1"}
tests:
  - name: a page's incident goes to Slack, Jira and the status page; an ack to Slack
    input:
      - at: 0s
        alerts: [{labels: {alertname: Down, instance: web1}}]
      - at: 1m
        incident: {event: incident.triggered, of_page: true, service: API Service, urgency: high,
                   title: "Down", priority: P1}
      - at: 2m
        incident: {event: incident.acknowledged, of_page: true, by: Jane}
    actions: [slack-oncall, jira-ops, status, slack-oncall]
    expect:
      - {event_action: trigger}
  - name: another sender's incident on the database service
    input:
      - at: 0s
        incident: {event: incident.triggered, service: Database, title: "replication lag"}
    actions: [slack-oncall, database-team]   # (jira-ops matches alerts labelled Down only)
    expect: []
  - name: a wrong expectation fails
    input:
      - at: 0s
        incident: {event: incident.resolved, service: Nothing}
    actions: [status]
"""


def test_rule_tests_say_which_actions_an_incident_event_makes(tmp_path):
    write_rules(tmp_path, RULES % {"done": "Done"})
    (tmp_path / "actions.test.yml").write_text(RULE_TEST)
    done = subprocess.run([sys.executable, "-m", "proxy", "test", str(tmp_path / "actions.test.yml")], check=False,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and lines[-1] == "2 passed, 1 failed", done.stdout + done.stderr
    assert lines[0].startswith("ok") and lines[1].startswith("ok") and lines[2].startswith("FAIL")
    assert "actions: expected ['status'], made ['slack-oncall']" in done.stdout


async def test_a_late_trigger_job_does_not_undo_the_resolve_on_the_status_page(
        tmp_path, fake_pd, proxy_process, targets):
    t = targets
    base, _ = await serve(tmp_path, fake_pd, proxy_process, t, "memory://")
    await fire(base, "web1")
    await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=10)
    key = triggers(fake_pd)[0]["dedup_key"]
    t.fail("statuspage", 1, 420, retry_after="5")  # the trigger's job waits 5 s
    await deliver(base, envelope("triggered", key, 1))
    await wait_for(lambda: t.count("statuspage", 420) == 1, timeout=10)
    await deliver(base, envelope("resolved", key, 2))  # and its resolve runs first
    await wait_for(lambda: t.component_log == [("cmp1", "operational")], timeout=10)
    await asyncio.sleep(6)  # the trigger's job has run again by now
    assert t.component_log == [("cmp1", "operational")] and t.sp_incidents == {}
    log = (tmp_path / "proxy.log").read_text()
    assert "the incident was resolved meanwhile" in log
