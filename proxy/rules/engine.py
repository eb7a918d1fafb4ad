"""Apply compiled rules to alerts: first match wins, `continue: true` goes on.

`RuleSet.place(alert)` is pure: it returns where the alert goes (one Placement per
matching rule) or why it goes nowhere (a suppression reason, a fixed set used as a
metric label). The groups' identities it keeps at hand only save it work: the same alert
gets the same answer (tests/unit/test_rules.py holds it to a fresh RuleSet's)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import orjson

from proxy.model import SEVERITIES, Alert, GroupMeta
from proxy.redact import mask
from proxy.rules.matchers import matches_all
from proxy.rules.types import ALL_LABELS, Heartbeat, Rule, RuleFile

__all__ = ["STORM_RULE", "SUPPRESS_REASONS", "Placement", "RuleSet", "group_dedup_key",
           "own_identity_key"]

STORM_RULE = "(storm)"  # the rule of a routing key's storm incident (see pipeline); not a name ops can use

IDENTS = 65536  # groups whose identity a RuleSet keeps at hand

SUPPRESS_REASONS = ("dropped", "no_routing_key", "inhibited", "maintenance")
_BUILTIN_SEVERITY_MAP = {
    "page": "critical", "fatal": "critical", "high": "error", "err": "error",
    "medium": "warning", "warn": "warning", "low": "info", "none": "info",
    "p1": "critical", "p2": "error", "p3": "warning", "p4": "info", "p5": "info",
    "sev-1": "critical", "sev-2": "error", "sev-3": "warning", "sev-4": "info",
}


@dataclass(slots=True)
class Placement:
    """An alert placed in a group: the rule that took it and the group's identity."""

    alert: Alert
    rule: Rule
    routing_key: str
    key_name: str
    group_key: str  # the group's PagerDuty dedup_key
    meta: GroupMeta  # what the store keeps about the group besides its alerts (shared: read only)
    severity: str

    @property
    def group_labels(self) -> dict[str, str]:
        return self.meta.group_labels


def group_dedup_key(rule_name: str, routing_key: str, labels: dict[str, str]) -> str:
    """Stable hash of a group's identity: the same on every replica and every restart."""
    return _dedup_key(rule_name, routing_key, tuple(sorted(labels.items())))


def own_identity_key(routing_key: str, fingerprint: str) -> str:
    """The group of an Events v2 event that keeps its own identity: it depends only on the
    routing key and the sender's dedup_key (not on the rule), so a resolve that carries
    nothing else finds it again, even after the store lost it."""
    return _dedup_key("", routing_key, (("fingerprint", fingerprint),))


@functools.lru_cache(maxsize=65536)
def _dedup_key(rule_name: str, routing_key: str, labels: tuple[tuple[str, str], ...]) -> str:
    ident = orjson.dumps([rule_name, routing_key, dict(labels)], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(ident).hexdigest()


class RuleSet:
    def __init__(self, rules: RuleFile) -> None:
        self.defaults = rules.defaults
        self.rules = rules.rules
        self.inhibit = rules.inhibit
        self.maintenance = rules.maintenance
        self.sources = rules.sources  # POST /v1/webhook/{name}: name -> mapping
        self.heartbeats = {hb.name: hb for hb in rules.heartbeats}
        self.actions = {a.name: a for a in rules.actions}  # on PagerDuty's incident events
        self._beating = [hb for hb in rules.heartbeats if hb.matchers]
        self._by_name = {r.name: r for _, r in self.walk()}
        # (rule, routing key, its group_by values) -> the group's dedup_key and meta: one
        # sort and hash per group, not per alert (bounded: emptied when it is full)
        self._idents: dict[tuple[int, str, str, tuple[str | None, ...]], tuple[str, GroupMeta]] = {}
        self._by_name[STORM_RULE] = replace(
            self.defaults, name=STORM_RULE, matchers=[], group_wait=0.0, resolve_wait=0.0,
            on_growth="update", min_alerts=0, for_=0.0, flap=None, stale_after=0.0,
            severity=None, max_alerts=1, custom_details={}, links=[], images=[], summary=None,
            remediate=None, notes=[])  # its summary and details come from proxy.storm

    def heartbeat_of(self, labels: dict[str, str]) -> Heartbeat | None:
        """The heartbeat an alert with these labels feeds (it never pages itself)."""
        for hb in self._beating:
            if matches_all(list(hb.matchers), labels):
                return hb
        return None

    def walk(self) -> Iterator[tuple[int, Rule]]:
        """Every rule with its depth (0: top level; deeper: in a rule's `routes:`), in the
        order of the files."""
        stack = [(0, r) for r in reversed(self.rules)]
        while stack:
            depth, rule = stack.pop()
            yield depth, rule
            stack += [(depth + 1, r) for r in reversed(rule.routes)]

    def rule(self, name: str) -> Rule:
        """The rule called `name`, or the defaults if a reload removed it."""
        return self._by_name.get(name, self.defaults)

    @staticmethod
    def _labeled(rule: Rule, alert: Alert) -> Alert:
        """The alert with the rule's `labels` set (templates over the alert), for grouping
        alerts of several sources by one shared label."""
        ctx = {"labels": alert.labels, "annotations": alert.annotations, "source": alert.source,
               "summary": alert.summary, "severity": alert.severity}
        labels = dict(alert.labels)
        for name, tpl in rule.labels.items():
            value = tpl.render(ctx).strip()
            if value:
                labels[name] = value
        return replace(alert, labels=labels)

    def _group(self, rule: Rule, rk: str, name: str, alert: Alert) -> tuple[str, GroupMeta]:
        """`_identity`, kept at hand by its group_by values for the alerts whose identity
        is nothing else (not all labels; no sender's dedup_key, which may stand in)."""
        if rule.group_by == ALL_LABELS or alert.dedup_key is not None:
            return self._identity(rule, rk, name, alert)
        ident = (id(rule), rk, name, tuple(map(alert.labels.get, rule.group_by)))
        known = self._idents.get(ident)
        if known is None:
            if len(self._idents) >= IDENTS:
                self._idents.clear()
            known = self._idents[ident] = self._identity(rule, rk, name, alert)
        return known

    @staticmethod
    def _identity(rule: Rule, rk: str, name: str, alert: Alert) -> tuple[str, GroupMeta]:
        """The dedup_key and meta of the group `rule` puts the alert in on routing key `rk`."""
        labels = alert.labels
        if rule.group_by == ALL_LABELS:
            glabels = dict(labels)
        else:
            glabels = {k: labels.get(k, "") for k in rule.group_by}
        if alert.dedup_key is not None and not any(glabels.values()):
            # an Events v2 event without the grouping labels keeps its own identity
            # (Alertmanager's pagerduty_configs already grouped it upstream)
            glabels = {"fingerprint": alert.fingerprint}
            return own_identity_key(rk, alert.fingerprint), GroupMeta(rule.name, rk, name, glabels)
        return group_dedup_key(rule.name, rk, glabels), GroupMeta(rule.name, rk, name, glabels)

    def severity(self, rule: Rule, alert: Alert) -> str:
        """The rule's severity; else its `severity:` template over the alert, or the
        alert's own, taken as it is or through severity_map; else error."""
        if rule.severity:
            return rule.severity
        raw = (alert.severity or "").lower()
        if rule.severity_template is not None:
            raw = rule.severity_template.render({
                "labels": alert.labels, "annotations": alert.annotations, "source": alert.source,
                "summary": alert.summary, "severity": alert.severity}).strip().lower()
        if raw in SEVERITIES:
            return raw
        return rule.severity_map.get(raw) or _BUILTIN_SEVERITY_MAP.get(raw) or "error"

    def source_marks(self, labels: dict[str, str]) -> list[str]:
        """The inhibition marks a firing alert with these labels leaves."""
        return [inh.key(labels) for inh in self.inhibit if matches_all(inh.source, labels)]

    def target_marks(self, labels: dict[str, str]) -> list[str]:
        """The marks that would mute an alert with these labels."""
        return [inh.key(labels) for inh in self.inhibit if matches_all(inh.target, labels)]

    def in_maintenance(self, labels: dict[str, str], now: float, rule: str = "") -> bool:
        """An alert with these labels, in a group of `rule`, is in a maintenance window."""
        return any(mw.applies(labels, rule) and mw.active(now) for mw in self.maintenance)

    @classmethod
    def _match(cls, rules: list[Rule], labels: dict[str, str]) -> list[Rule] | None:
        """The rules an alert goes to, as Alertmanager routes: the first that matches (and
        the next ones while `continue`), each replaced by what its `routes:` give if any of
        them match. None: a rule drops it."""
        matched: list[Rule] = []
        for rule in rules:
            if matches_all(rule.matchers, labels):
                if rule.drop:
                    return None
                inner = cls._match(rule.routes, labels) if rule.routes else []
                if inner is None:
                    return None
                matched += inner or [rule]
                if not rule.cont:
                    break
        return matched

    def place(self, alert: Alert) -> tuple[list[Placement], str | None]:
        matched = self._match(self.rules, alert.labels)
        if matched is None:
            return [], "dropped"
        if not matched:
            matched = [self.defaults]
        out = []
        original = alert
        for rule in matched:
            alert = self._labeled(rule, original) if rule.labels else original
            if rule.own_key or not alert.routing_key:
                rk, name = rule.routing_key, rule.key_name
            else:
                rk, name = alert.routing_key, mask(alert.routing_key)
            if not rk:
                continue
            out.append(Placement(alert, rule, rk, name, *self._group(rule, rk, name, alert),
                                 self.severity(rule, alert)))
        return out, (None if out else "no_routing_key")
