"""Silences, as Alertmanager has them: a set of matchers, a start and an end, who made it
and why. An active silence mutes every firing alert its matchers all match (the flush's
mute stage, reason `silenced`): the alert does not open, grow or re-trigger a page, its
group still pages for its other alerts, and a resolve passes through.

Silences live in the store (shared by replicas, kept across restarts by SQLite and Redis)
as JSON blobs; each replica reads them all every `REFRESH` seconds (app.py's silences
loop, off the flush's path), and knows its own changes at once. An expired silence is kept `RETENTION` (Alertmanager's default
retention, 120 h), then forgotten. The HTTP API that amtool speaks is amapi.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson

from proxy.clock import Clock
from proxy.errors import InputError
from proxy.jsontypes import JsonObject
from proxy.rules.matchers import Matcher, matches_all, parse_matcher
from proxy.store import Store

__all__ = ["RETENTION", "Silence", "Silences", "iso", "matcher_api", "parse_time"]

log = logging.getLogger("alert_proxy")

RETENTION = 120 * 3600.0  # seconds an expired silence is kept (Alertmanager's --data.retention)
REFRESH = 1.0  # seconds between two reads of the store's silences


def iso(t: float) -> str:
    """A time as Alertmanager writes it (RFC 3339, UTC, milliseconds)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(v: object, what: str) -> float:
    if not isinstance(v, str):
        raise InputError([f"{what} must be an RFC 3339 date-time string"])
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError([f"{what}: {v!r} is not an RFC 3339 date-time"]) from None
    if t.tzinfo is None:
        raise InputError([f"{what}: {v!r} has no time zone"])
    return t.timestamp()


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.starts_at <= now < self.ends_at and matches_all(list(self.matchers), labels)

    def to_api(self, now: float) -> JsonObject:
        """Alertmanager's gettableSilence."""
        return {"id": self.id, "status": {"state": self.state(now)}, "updatedAt": iso(self.updated_at),
                "matchers": [matcher_api(m) for m in self.matchers], "startsAt": iso(self.starts_at),
                "endsAt": iso(self.ends_at), "createdBy": self.created_by, "comment": self.comment}

    def blob(self) -> str:
        return orjson.dumps({"id": self.id, "matchers": [str(m) for m in self.matchers],
                             "starts_at": self.starts_at, "ends_at": self.ends_at,
                             "created_by": self.created_by, "comment": self.comment,
                             "updated_at": self.updated_at}).decode()

    @classmethod
    def from_blob(cls, text: str | bytes) -> Silence:
        d = orjson.loads(text)
        return cls(d["id"], tuple(parse_matcher(m) for m in d["matchers"]), d["starts_at"],
                   d["ends_at"], d["created_by"], d["comment"], d["updated_at"])

    def describe(self) -> str:
        return "{" + ", ".join(str(m) for m in self.matchers) + "}"


def matcher_api(m: Matcher) -> JsonObject:
    return {"name": m.name, "value": m.value, "isRegex": m.op in ("=~", "!~"),
            "isEqual": m.op in ("=", "=~")}


def _matcher(obj: object, i: int) -> Matcher:
    """One of Alertmanager's API matchers: {name, value, isRegex, isEqual (default true)}."""
    where = f"matchers[{i}]"
    if not isinstance(obj, dict):
        raise InputError([f"{where} must be an object with name, value and isRegex"])
    name, value, is_regex = obj.get("name"), obj.get("value"), obj.get("isRegex")
    is_equal = obj.get("isEqual", True)
    if not isinstance(name, str) or not name:
        raise InputError([f"{where}.name is required (a label name)"])
    if not isinstance(value, str):
        raise InputError([f"{where}.value is required (a string)"])
    if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise InputError([f"{where}: isRegex is required and, with isEqual, must be true or false"])
    op = ("=~" if is_equal else "!~") if is_regex else ("=" if is_equal else "!=")
    try:
        return parse_matcher(f"{name}{op}{orjson.dumps(value).decode()}")
    except ValueError as e:
        raise InputError([f"{where}: {e}"]) from None


def postable(body: object, now: float) -> tuple[str | None, Silence]:
    """Alertmanager's postableSilence, checked as Alertmanager checks it: the id to update
    (None: a new silence) and the silence (its id still to be given)."""
    if not isinstance(body, dict):
        raise InputError(["body must be a JSON object (a silence)"])
    raw = body.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise InputError(["matchers: at least one matcher is required"])
    matchers = tuple(_matcher(m, i) for i, m in enumerate(raw))
    if all(m.matches({}) for m in matchers):
        raise InputError(["at least one matcher must not match the empty string"])
    start = parse_time(body.get("startsAt"), "startsAt")
    end = parse_time(body.get("endsAt"), "endsAt")
    if end < start:
        raise InputError(["end time must not be before start time"])
    if end < now:
        raise InputError(["end time can't be in the past"])
    created_by, comment = body.get("createdBy"), body.get("comment")
    if not isinstance(created_by, str) or not created_by.strip():
        raise InputError(["createdBy is required"])
    if not isinstance(comment, str) or not comment.strip():
        raise InputError(["comment is required"])
    sid = body.get("id")
    if sid is not None and not isinstance(sid, str):
        raise InputError(["id must be a string"])
    return sid or None, Silence("", matchers, max(start, now), end, created_by, comment, now)


class Silences:
    """The silences every replica shares, read from the store; which mute an alert."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self._all: dict[str, Silence] = {}
        self._read_at = -1.0
        self._forgot_at = -1e18

    async def refresh(self, force: bool = False) -> None:
        now = self.clock.now()
        if not force and now - self._read_at < REFRESH:
            return
        if now - self._forgot_at >= 60.0:  # (expired ones go after RETENTION: a minute late is fine)
            await self.store.forget_silences(now - RETENTION)
            self._forgot_at = now
        found = {}
        for blob in await self.store.silences():
            s = Silence.from_blob(blob)
            found[s.id] = s
        self._all, self._read_at = found, now

    def all(self) -> list[Silence]:
        return sorted(self._all.values(), key=lambda s: (s.ends_at, s.id))

    def get(self, sid: str) -> Silence | None:
        return self._all.get(sid)

    def active(self, now: float) -> list[Silence]:
        return [s for s in self._all.values() if s.starts_at <= now < s.ends_at]

    def silenced_by(self, labels: Mapping[str, str], now: float,
                    active: list[Silence] | None = None) -> list[str]:
        """The ids of the active silences that mute an alert with these labels."""
        return sorted(s.id for s in (self.active(now) if active is None else active)
                      if matches_all(list(s.matchers), labels))

    async def _save(self, s: Silence, who: str, what: str) -> None:
        await self.store.put_silence(s.id, s.blob(), s.ends_at)
        self._all[s.id] = s
        log.info("silence %s %s by %s (created by %s): %s until %s (%s)", s.id, what, who,
                 s.created_by, s.describe(), iso(s.ends_at), s.comment)

    async def post(self, body: object, who: str) -> str:
        """Create or update a silence from Alertmanager's postableSilence; its id."""
        await self.refresh(force=True)
        now = self.clock.now()
        sid, new = postable(body, now)
        old = self._all.get(sid) if sid else None
        if sid and old is None:
            raise LookupError(sid)
        if old is not None and old.state(now) != "expired" and old.matchers == new.matchers:
            start = old.starts_at if old.state(now) == "active" else new.starts_at
            await self._save(replace(new, id=old.id, starts_at=start), who, "updated")
            return old.id
        if old is not None and old.state(now) != "expired":
            await self._save(replace(old, ends_at=now, updated_at=now), who, "expired (replaced)")
        made = replace(new, id=str(uuid.uuid4()))
        await self._save(made, who, "created")
        return made.id

    async def expire(self, sid: str, who: str) -> None:
        await self.refresh(force=True)
        now = self.clock.now()
        s = self._all.get(sid)
        if s is None:
            raise LookupError(sid)
        if s.state(now) == "expired":
            raise InputError([f"silence {sid} already expired"])
        await self._save(replace(s, starts_at=min(s.starts_at, now), ends_at=now, updated_at=now),
                         who, "expired")
