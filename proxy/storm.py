"""Storm folding: when more than `storm.groups` groups open on one routing key within
`storm.within`, the rest fold into one storm incident per key until it is calm again
(no group folded for `within`). Critical groups are never folded.

The storm incident is a group of its own (rule STORM_RULE, dedup_key `storm_key(rk)`)
that holds one alert, the storm itself, and keeps its figures in its state (StormFigures):
the folded groups still firing and their alerts, how many folded since it began, when the
last one did, and the largest ones. Folding a group, or a folded group resolving, is a
`Delta` of those figures; the pipeline adds up a flushed batch's deltas and applies them
once per storm (`apply`: one load and one commit of a group of one alert). So folding
costs the same whatever the storm's size: nothing here reads the folded groups again.

A folded group looks again every min(within, group_interval), and at the latest when the
storm would be calm; it pages on its own (`after_storm`) once the storm is over. A folded
group that resolves during the storm sends nothing.

Pure but for `Folding.views` and `apply`, which read and write the storm groups."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from proxy.correlate import Page
from proxy.jsontypes import JsonObject
from proxy.model import Alert, Flush, Group, GroupAlert, GroupMeta
from proxy.rules.engine import STORM_RULE, group_dedup_key
from proxy.rules.types import Rule, Storm
from proxy.state import Folded, StormFigures
from proxy.store import Commit, Entry, Store

__all__ = ["TOP", "Delta", "Folding", "active", "add", "apply", "decide", "details", "paged", "storm_key",
           "summary"]

TOP = 10  # the largest folded groups a storm incident lists
ORPHAN_AFTER = 30.0  # seconds a storm group may wait for its first figures (a crash in between)
_STORM_FP = "(storm)"  # the fingerprint of the one alert a storm group holds (no source makes it)


def storm_key(routing_key: str) -> str:
    """The dedup_key of a routing key's storm incident (one per key)."""
    return group_dedup_key(STORM_RULE, routing_key, {})


def _top(members: Iterable[Folded]) -> list[Folded]:
    return sorted(members, key=lambda m: -m.alerts)[:TOP]


@dataclass(slots=True)
class Delta:
    """A change of one storm's figures, from the groups of one flushed batch."""

    routing_key: str
    key_name: str
    groups: int = 0
    alerts: int = 0
    folds: int = 0
    last: float = 0.0
    top: list[Folded] = field(default_factory=list)  # groups that folded (the TOP largest)
    gone: set[str] = field(default_factory=set)  # dedup_keys of groups no longer folded

    def merge(self, other: Delta) -> None:
        self.groups += other.groups
        self.alerts += other.alerts
        self.folds += other.folds
        self.last = max(self.last, other.last)
        self.gone |= other.gone
        self.top = _top([m for m in self.top if m.dedup_key not in other.gone] + other.top)


def add(fig: StormFigures, d: Delta) -> None:
    """A storm's figures with a delta added."""
    fig.groups = max(0, fig.groups + d.groups)
    fig.alerts = max(0, fig.alerts + d.alerts)
    fig.folds += d.folds
    fig.last = max(fig.last, d.last)
    fig.top = _top([m for m in fig.top if m.dedup_key not in d.gone] + d.top)


def active(fig: StormFigures, now: float, within: float) -> bool:
    """Groups still fold into it: some are folded, and the last folded within `within`."""
    return fig.groups > 0 and now < fig.last + within


class Folding:
    """The storm side of a flush: which groups fold. Each process counts the groups that
    opened on a key recently (each replica its own); the storms themselves are read from
    the store once per batch (`views`)."""

    def __init__(self) -> None:
        self._opens: dict[str, deque[float]] = {}  # routing key -> recent group openings
        self._views: dict[str, StormFigures | None] = {}  # this flush's storms, with its own folds
        self._deltas: dict[str, Delta] = {}  # storm key -> the folds committed, not yet applied

    def begin(self) -> None:
        """A flush starts: the storms are read again (once) from the store."""
        self._views = {}

    def note(self, d: Delta) -> None:
        """A committed fold or unfold: applied to its storm at the end of the flush."""
        key = storm_key(d.routing_key)
        if key in self._deltas:
            self._deltas[key].merge(d)
        else:
            self._deltas[key] = d

    async def apply(self, store: Store, now: float, rule: Rule) -> None:
        """Apply the flush's deltas, one load and one commit per storm; kept for the next
        flush if the store fails."""
        if self._deltas:
            await apply(store, self._deltas, now, rule)
            self._deltas = {}

    def _opened(self, rk: str, now: float, within: float) -> int:
        """Groups that opened (paged first, or folded) on this key within `within`,
        counting this one."""
        q = self._opens.setdefault(rk, deque())
        q.append(now)
        while q and q[0] <= now - within:
            q.popleft()
        return len(q)

    async def views(self, store: Store, groups: Iterable[Group]) -> dict[str, StormFigures | None]:
        """The storms of the batch's routing keys: read once per flush (one read for those
        not seen yet), with this flush's own folds added as they are decided."""
        keys = {storm_key(g.routing_key): g.routing_key for g in groups
                if g.rule != STORM_RULE and g.routing_key not in self._views}
        if keys:
            found = {g.key: g for g in await store.load_many(list(keys))}
            for k, rk in keys.items():
                self._views[rk] = found[k].state.storm if k in found else None
        return self._views

    def member(self, g: Group, f: Flush, page: Page, rule: Rule, storm: Storm | None,
               views: dict[str, StormFigures | None], now: float) -> tuple[str, Delta | None]:
        """A group about to page for the first time (or folded before): page it, or fold it
        into its key's storm incident (`f` and `page` are changed to hold it). Returns
        whether it is held as folded now, and its change of the storm's figures."""
        folded = g.state.folded
        if f.delete:  # resolved: if it was folded, it leaves the storm having sent nothing
            return ("folded", self._unfold(g)) if folded else ("", None)
        if folded and (storm is None or g.urgent):  # the setting went, or a critical alert came
            return "", self._unfold(g)
        if storm is None or g.urgent or "trigger" not in f.actions:
            return "", None
        view = views.get(g.routing_key)
        storm_on = view is not None and active(view, now, storm.within)
        on = storm_on if folded else (self._opened(g.routing_key, now, storm.within) > storm.groups
                                      or storm_on)
        if not on:
            if folded:
                g.state.unfolded = True  # it pages on its own: the storm is over
                return "", self._unfold(g)
            return "", None
        calm_at = (view.last if storm_on and view is not None else now) + storm.within
        f.actions = []
        f.next_due = min(now + min(storm.within, rule.group_interval), max(calm_at, now))
        page.why, page.held = "", "folded"
        if folded:
            return "folded", None
        n = sum(1 for a in g.alerts.values() if a.firing)
        g.state.folded, g.state.folded_at, g.state.folded_alerts = storm_key(g.routing_key), now, n
        first = next((a for a in g.alerts.values() if a.firing), None)
        member = Folded(dedup_key=g.key, summary=(first.alert.summary if first else "") or g.rule,
                        labels={"rule": g.rule, **{k: v for k, v in g.group_labels.items() if v}},
                        alerts=n)
        seen = views[g.routing_key] = view or StormFigures()  # later groups of this flush see it
        seen.groups, seen.folds, seen.last = seen.groups + 1, seen.folds + 1, max(seen.last, now)
        return "folded", Delta(g.routing_key, g.key_name, 1, n, 1, now, [member])

    @staticmethod
    def _unfold(g: Group) -> Delta:
        st = g.state
        n = st.folded_alerts or 1
        st.folded, st.folded_at, st.folded_alerts = "", 0.0, 0
        return Delta(g.routing_key, g.key_name, -1, -n, gone={g.key})


def decide(g: Group, rule: Rule, within: float, now: float) -> tuple[Flush, Page]:
    """What a storm incident sends now: its first trigger; an update (why: grown) at most
    every group_interval while more groups fold; a repeat after repeat_interval (not while
    acknowledged); and its resolve once calm (no group folded for `within`) or once no
    folded group fires any more."""
    fig = g.state.storm
    page = Page()
    if fig is None:
        if now - g.opened_at < ORPHAN_AFTER:  # its figures are on their way
            return Flush([], False, now + 1.0), page
        fig = StormFigures()
    calm_at = fig.last + within
    if not active(fig, now, within):
        return Flush(["resolve"] if g.triggered else [], True, 0.0), page
    pd = g.state.pd.status if g.state.pd else ""
    fresh = fig.folds > fig.paged
    if not g.triggered or (pd == "resolved" and fresh):
        page.why = "first"
        return Flush(["trigger"], False, calm_at), page
    if pd == "resolved":
        page.held = "resolved_in_pagerduty"
        return Flush([], False, calm_at), page
    repeat_at = g.last_trigger_at + rule.repeat_interval
    if now >= repeat_at and pd != "acknowledged":
        page.why = "repeat"
        return Flush(["trigger"], False, min(calm_at, now + rule.repeat_interval)), page
    if fresh:
        grown_at = g.last_trigger_at + rule.group_interval
        if now >= grown_at:
            page.why = "grown"
            return Flush(["trigger"], False, min(calm_at, repeat_at)), page
        return Flush([], False, min(calm_at, grown_at)), page
    return Flush([], False, min(calm_at, max(repeat_at, now + rule.group_interval))), page


def paged(g: Group) -> None:
    """The storm incident's trigger is committed with this state: what it counted."""
    if g.state.storm is not None:
        g.state.storm.paged = g.state.storm.folds


def summary(g: Group) -> str:
    fig = g.state.storm or StormFigures()
    return f"Alert storm on {g.key_name}: {fig.groups} groups folded into this incident"


def details(g: Group) -> JsonObject:
    """Counts and the top groups of a storm incident (its trigger's custom_details)."""
    fig = g.state.storm or StormFigures()
    return {"storm": True, "folded_groups": fig.groups, "folded_alerts": fig.alerts,
            "groups_folded_since_start": fig.folds,
            "top_groups": [{"dedup_key": m.dedup_key, "summary": m.summary, "labels": m.labels,
                            "alerts": m.alerts} for m in fig.top]}


def _entry(key: str, d: Delta, rule: Rule) -> Entry:
    """The storm's one alert, which opens its group."""
    alert = Alert(fingerprint=_STORM_FP, status="firing", labels={"storm": d.key_name},
                  source="storm", summary=f"Alert storm on {d.key_name}")
    return Entry(group_key=key, meta=GroupMeta(STORM_RULE, d.routing_key, d.key_name,
                                               {"storm": d.key_name}),
                 fingerprint=_STORM_FP, alert_json=GroupAlert(alert, "error").to_json(),
                 group_wait=0.0, group_interval=rule.group_interval, resolve_wait=0.0,
                 max_alerts=1)


async def apply(store: Store, deltas: Mapping[str, Delta], now: float, rule: Rule) -> None:
    """Add each storm's delta to its figures (opening the storm's group on its first fold);
    the group is made due when its figures call for a page. A group changed meanwhile (a
    flush, another replica) is read again."""
    for key, d in deltas.items():
        for _ in range(10):
            g = await store.load(key)
            if g is None:
                if d.folds <= 0:
                    break  # groups left a storm that is over
                await store.record([_entry(key, d, rule)], [], now)
                continue
            fig = g.state.storm = g.state.storm or StormFigures()
            add(fig, d)
            if not g.triggered:
                g.due = min(g.due, now)
            elif fig.folds > fig.paged:
                g.due = min(g.due, max(now, g.last_trigger_at + g.group_interval))
            if fig.groups <= 0:
                g.due = min(g.due, now)  # nothing folded fires: it resolves
            if (await store.commit([Commit(g, False, [])], durable=False))[0]:
                break
