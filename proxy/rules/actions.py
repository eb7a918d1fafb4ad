"""`actions:` in a rules file: what to do when PagerDuty tells of an incident event.

    actions:
      - name: slack-oncall
        on: [incident.triggered, incident.acknowledged, incident.resolved]
        match:                      # all optional; every one given must hold
          labels: {team: db}        # the group's labels (incidents the proxy sent)
          service: Checkout         # the incident's service, urgency, priority (P1 ...)
          urgency: high
          priority: P1
          title: "(?i)database"     # a regex searched in the incident's title
        slack: {url: "${SLACK_WEBHOOK_URL}", text: "..."}           # exactly one of:
        # webhook: {url, method, headers, body, timeout}            # any HTTP endpoint
        # jira: {site, project, issue_type, email, token, done, summary}
        # statuspage: {page, components, api_key, on_trigger, on_resolve, incident, name}

Secrets (a Slack webhook URL, Jira and Statuspage tokens) are taken only as `${VAR}`, read
from the environment. Templates see `incident`, `event`, `duration`, and for incidents of
the proxy's groups `labels`, `group_labels`, `alerts` and `num_firing`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from proxy.rules.matchers import Matcher, matchers_from_mapping
from proxy.rules.templates import Template
from proxy.rules.types import Remediate
from proxy.rules.values import _ENV_REF, _substitute, _template, _unknown, http_call
from proxy.rules.yamlfile import Ctx, LDict

__all__ = ["ACTION_EVENTS", "ACTION_NAMES", "COMPONENT_STATUSES", "Action", "load_action"]

ACTION_EVENTS = ("incident.triggered", "incident.acknowledged", "incident.unacknowledged",
                 "incident.resolved", "incident.reopened", "incident.escalated", "incident.reassigned",
                 "incident.delegated", "incident.priority_updated", "incident.annotated",
                 "incident.responder.added", "incident.status_update_published")
ACTION_NAMES = ("incident", "event", "duration", "labels", "group_labels", "alerts", "num_firing")
COMPONENT_STATUSES = ("operational", "under_maintenance", "degraded_performance", "partial_outage",
                      "major_outage")
KINDS = ("webhook", "slack", "jira", "statuspage")
_KEYS = ("name", "on", "match", *KINDS)
_MATCH = ("labels", "service", "urgency", "priority", "title")


@dataclass(frozen=True)
class Action:
    name: str
    on: tuple[str, ...]
    kind: str
    spec: dict[str, Any]  # the kind's settings: templates and values (below)
    target: str  # what pacing and logs name: the kind and its host
    labels: tuple[Matcher, ...] = ()
    incident: dict[str, str] = field(default_factory=dict)  # service, urgency, priority
    title: re.Pattern[str] | None = None
    secrets: tuple[str, ...] = ()
    call: Remediate | None = None  # webhook:


class _Bad(ValueError):
    pass


def _secret(v: Any, what: str, secrets: list[str]) -> str:
    """A secret: only as ${VAR}."""
    if not isinstance(v, str) or not _ENV_REF.search(v):
        raise _Bad(f"{what}: a secret is given as ${{VAR}} (read from the environment), never "
                   "written in the rules")
    value, _ = _substitute(v)
    secrets.append(value)
    return value


def _plain(v: Any, what: str, default: str | None = None) -> str:
    if v is None and default is not None:
        return default
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f"{what}: must be a non-empty string")
    return _substitute(v)[0]


def _url(v: str, what: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise _Bad(f"{what}: {v[:8]}... is not an http(s) URL")
    return v.rstrip("/")


def _tpl(v: Any, what: str) -> Template | None:
    if v is None:
        return None
    try:
        return _template(v, ACTION_NAMES)
    except ValueError as e:
        raise _Bad(f"{what}: {e}") from None


def _only(d: Any, kind: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise _Bad(f"{kind}: must be a mapping")
    unknown = set(d) - set(known)
    if unknown:
        raise _Bad(f"{kind}: unknown key {min(unknown)!r} (known: {', '.join(known)})")
    return d


def _spec(kind: str, d: Any, secrets: list[str]) -> tuple[dict[str, Any], str, Remediate | None]:
    if kind == "webhook":
        try:
            call = http_call(d, ACTION_NAMES)
        except ValueError as e:
            raise _Bad(f"webhook: {e}") from None
        secrets.extend(call.secrets)
        return {}, "webhook " + call.url.source.split("/")[2].split("{")[0], call
    if kind == "slack":
        d = _only(d, kind, ("url", "text"))
        url = _url(_secret(d.get("url"), "slack.url", secrets), "slack.url")
        return {"url": url, "text": _tpl(d.get("text"), "slack.text")}, "slack", None
    if kind == "jira":
        d = _only(d, kind, ("site", "project", "issue_type", "email", "token", "done", "summary", "api"))
        api = d.get("api", 3)
        if api not in (2, 3):
            raise _Bad("jira.api: 2 or 3 (the REST API version; 3 takes Atlassian Document Format)")
        site = _url(_plain(d.get("site"), "jira.site"), "jira.site")
        spec = {"site": site, "project": _plain(d.get("project"), "jira.project"),
                "issue_type": _plain(d.get("issue_type"), "jira.issue_type", "Task"),
                "email": _plain(d.get("email"), "jira.email"),
                "token": _secret(d.get("token"), "jira.token", secrets),
                "done": _plain(d.get("done"), "jira.done", "Done"), "api": api,
                "summary": _tpl(d.get("summary"), "jira.summary")}
        return spec, "jira " + site.split("/")[2], None
    d = _only(d, kind, ("page", "components", "api_key", "on_trigger", "on_resolve", "incident", "name", "url"))
    comps = d.get("components")
    if isinstance(comps, str):
        comps = [comps]
    if not isinstance(comps, list) or not comps or not all(isinstance(c, str) and c for c in comps):
        raise _Bad("statuspage.components: a list of component ids")
    spec = {"page": _plain(d.get("page"), "statuspage.page"), "components": [_substitute(c)[0] for c in comps],
            "api_key": _secret(d.get("api_key"), "statuspage.api_key", secrets),
            "url": _url(_plain(d.get("url"), "statuspage.url", "https://api.statuspage.io/v1"), "statuspage.url"),
            "incident": d.get("incident", False), "name": _tpl(d.get("name"), "statuspage.name")}
    for key, default in (("on_trigger", "major_outage"), ("on_resolve", "operational")):
        spec[key] = d.get(key, default)
        if spec[key] not in COMPONENT_STATUSES:
            raise _Bad(f"statuspage.{key}: {spec[key]!r} is not one of {', '.join(COMPONENT_STATUSES)}")
    if not isinstance(spec["incident"], bool):
        raise _Bad("statuspage.incident: true or false (open and resolve a Statuspage incident)")
    return spec, "statuspage", None


def load_action(ctx: Ctx, obj: LDict, i: int, seen: dict[str, str]) -> Action | None:
    name = obj.get("name")
    where = f"actions {name!r}: " if isinstance(name, str) else f"actions[{i}]: "
    _unknown(ctx, obj, where, _KEYS)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        ctx.err(obj, "name" if "name" in obj else None, f"{where}name is required (letters, digits, "
                "'.', '_', '-')")
        return None
    if name in seen:
        ctx.err(obj, "name", f"{where}name already used at {seen[name]}")
        return None
    seen[name] = f"{ctx.path}:{obj.line}"
    on = obj.get("on")
    on = [on] if isinstance(on, str) else on
    if not isinstance(on, list) or not on or any(e not in ACTION_EVENTS for e in on):
        ctx.err(obj, "on" if "on" in obj else None, f"{where}on: a list of PagerDuty webhook event "
                f"types: {', '.join(ACTION_EVENTS)}")
        return None
    kinds = [k for k in KINDS if k in obj]
    if len(kinds) != 1:
        ctx.err(obj, None, f"{where}exactly one of {', '.join(KINDS)} (got {len(kinds)})")
        return None
    secrets: list[str] = []
    try:
        spec, target, call = _spec(kinds[0], obj[kinds[0]], secrets)
        m = _only(obj.get("match") or {}, "match", _MATCH)
        labels = m.get("labels") or {}
        if not isinstance(labels, dict):
            raise _Bad("match.labels: a mapping of label names to values")
        title = re.compile(str(m["title"])) if "title" in m else None
    except re.error as e:
        ctx.err(obj, "match", f"{where}match.title: not a regex: {e}")
        return None
    except ValueError as e:
        ctx.err(obj, kinds[0] if kinds[0] in str(e)[:12] else "match", f"{where}{e}")
        return None
    return Action(name=name, on=tuple(on), kind=kinds[0], spec=spec, target=target,
                  labels=tuple(matchers_from_mapping(labels)),
                  incident={k: str(m[k]) for k in ("service", "urgency", "priority") if k in m},
                  title=title, secrets=tuple(s for s in secrets if s), call=call)
