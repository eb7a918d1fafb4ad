"""What the pipeline keeps about a group between two flushes (`Group.state`), typed.

    GroupState    held (why nothing pages now), why (the last page's reason), paged (its
                  alerts), first_page_at, flap_until, and the parts below
    Incident      PagerDuty's view of the group's incident, from its webhooks
    Remediation   the remediation call's progress and outcome
    StormFigures  a storm incident's figures (proxy/storm.py); a folded group keeps
                  folded (its storm's key), folded_at and folded_alerts instead

Stores keep a state as an opaque JSON blob (`to_json`, `from_json`) and never look inside
it; the few fields the console lists without loading a group come from `shown()`. A blob
written by an earlier version (a plain dict with the same keys) reads the same way, and
keys it does not know are ignored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Folded", "GroupState", "Incident", "Remediation", "StormFigures"]


@dataclass(slots=True)
class Incident:
    """PagerDuty's view of a group's incident (webhooks v3)."""

    status: str = ""  # triggered | acknowledged | resolved
    at: float = 0.0  # when PagerDuty said so (the event's occurred_at)
    event: str = ""  # the webhook event's id: a repeat changes nothing
    incident: str = ""  # PagerDuty's incident id
    by: str = ""  # who (the event's agent)
    firing: tuple[str, ...] = ()  # the alerts firing when a person resolved it
    acknowledged_at: float = 0.0
    resolved_at: float = 0.0
    noted: str = ""  # the incident whose notes are written (proxy/notes.py)


@dataclass(slots=True)
class Remediation:
    """A remediation call claimed by a flush (proxy/remediate.py)."""

    called_at: float = 0.0
    until: float = 0.0  # the page waits until then
    outcome: str = ""  # ok | failed | timeout | error; "" while the call is under way
    http_status: int | None = None
    seconds: float = 0.0
    answer: str = ""  # the first characters of the answer, secrets masked


@dataclass(slots=True)
class Folded:
    """A folded group as its storm incident lists it."""

    dedup_key: str = ""
    summary: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    alerts: int = 0


@dataclass(slots=True)
class StormFigures:
    """A storm incident's figures (proxy/storm.py)."""

    groups: int = 0  # folded groups still firing
    alerts: int = 0  # their alerts, as counted when each folded
    folds: int = 0  # groups folded since the storm began (only grows)
    last: float = 0.0  # when the last group folded
    paged: int = 0  # `folds` when the incident was last triggered
    top: list[Folded] = field(default_factory=list)  # the largest folded groups


@dataclass(slots=True)
class GroupState:
    held: str = ""  # why nothing pages now: threshold, flapping, muted, folded, ...
    why: str = ""  # the last trigger's reason: first, grown, repeat
    paged: tuple[str, ...] = ()  # the fingerprints the last trigger carried
    first_page_at: float = 0.0
    flap_until: float = 0.0  # flapping: the group stays open until then
    unfolded: bool = False  # paged on its own after a storm
    folded: str = ""  # folded into this storm incident (its dedup_key)
    folded_at: float = 0.0
    folded_alerts: int = 0
    pd: Incident | None = None
    remediation: Remediation | None = None
    storm: StormFigures | None = None  # (a storm incident's own state)

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from a new state's, as JSON values."""
        out = {k: v for k, v in ((k, getattr(self, k)) for k in _PLAIN) if v}
        if self.paged:
            out["paged"] = list(self.paged)
        if self.pd is not None:
            out["pd"] = {k: v for k, v in ((k, getattr(self.pd, k)) for k in _INCIDENT) if v}
            if self.pd.firing:
                out["pd"]["firing"] = list(self.pd.firing)
        if self.remediation is not None:
            r = self.remediation
            out["remediation"] = {"called_at": r.called_at, "until": r.until, **(
                {"outcome": r.outcome, "http_status": r.http_status, "seconds": r.seconds,
                 "answer": r.answer} if r.outcome else {})}
        if self.storm is not None:
            f = self.storm
            out["storm"] = {"groups": f.groups, "alerts": f.alerts, "folds": f.folds, "last": f.last,
                            "paged": f.paged, "top": [{"dedup_key": m.dedup_key, "summary": m.summary,
                                                       "labels": m.labels, "alerts": m.alerts}
                                                      for m in f.top]}
        return out

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> GroupState:
        return cls.from_dict(orjson.loads(text) if text else {})

    @classmethod
    def from_dict(cls, d: Any) -> GroupState:
        if not isinstance(d, dict) or not d:
            return cls()
        st = cls(**{k: d[k] for k in _PLAIN if k in d})
        if d.get("paged"):
            st.paged = tuple(d["paged"])
        if isinstance(pd := d.get("pd"), dict):
            st.pd = Incident(**{k: pd[k] for k in _INCIDENT if k in pd})
            st.pd.firing = tuple(pd.get("firing") or ())
        if isinstance(r := d.get("remediation"), dict):
            st.remediation = Remediation(**{k: r[k] for k in _REMEDIATION if k in r})
        if isinstance(f := d.get("storm"), dict):
            st.storm = StormFigures(**{k: f[k] for k in _FIGURES if k in f})
            st.storm.top = [Folded(**{k: m[k] for k in _FOLDED if k in m})
                            for m in f.get("top") or () if isinstance(m, dict)]
        return st

    def shown(self) -> dict[str, Any]:
        """What the console lists of a group without loading it (the heads)."""
        out: dict[str, Any] = {}
        if self.held:
            out["held"] = self.held
        if self.pd is not None and self.pd.status:
            out["pd"] = {"status": self.pd.status}
        if self.folded:
            out["folded"] = self.folded
        return out


_PLAIN = ("held", "why", "first_page_at", "flap_until", "unfolded", "folded", "folded_at",
          "folded_alerts")
_INCIDENT = ("status", "at", "event", "incident", "by", "acknowledged_at", "resolved_at", "noted")
_REMEDIATION = ("called_at", "until", "outcome", "http_status", "seconds", "answer")
_FIGURES = ("groups", "alerts", "folds", "last", "paged")
_FOLDED = ("dedup_key", "summary", "labels", "alerts")
