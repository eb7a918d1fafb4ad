"""What the engine's parts share: the connection, and the counts the gauges and the
sender read without a query."""

from __future__ import annotations

import dataclasses
import sqlite3

Change = tuple[str, str, int]  # (groups | dead | depth | name:<name>, routing key, n)


@dataclasses.dataclass(slots=True)
class Counts:
    """Kept by the engine (the file's only writer) as its transactions commit, mirrored in
    the proxy from the changes each answer carries."""

    groups: int = 0
    dead: int = 0
    depth: dict[str, int] = dataclasses.field(default_factory=dict)  # routing key -> events queued
    names: dict[str, str] = dataclasses.field(default_factory=dict)  # routing key -> its name

    def apply(self, what: str, rk: str, n: int) -> None:
        if what == "groups":
            self.groups += n
        elif what == "dead":
            self.dead += n
        elif what == "depth":
            self.depth[rk] = self.depth.get(rk, 0) + n
        else:
            self.names[rk] = what[len("name:"):]

    def as_changes(self) -> list[Change]:
        """The counts as changes from nothing (the proxy's mirror starts from them)."""
        return [("groups", "", self.groups), ("dead", "", self.dead),
                *(("name:" + self.names.get(rk, "?"), rk, 0) for rk in self.depth),
                *(("depth", rk, n) for rk, n in self.depth.items())]

    def read(self, c: sqlite3.Connection) -> None:
        """The counts of a file just opened."""
        self.groups = c.execute("SELECT COUNT(*) FROM groups").fetchone()[0]
        self.dead = c.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        for rk, name, n in c.execute("SELECT rk, key_name, COUNT(*) FROM outbox GROUP BY rk"):
            self.depth[rk], self.names[rk] = n, name


class Tables:
    """The connection the operations run on, inside the transaction the engine opened, and
    the count changes of the operation under way (kept if it commits)."""

    def __init__(self, c: sqlite3.Connection) -> None:
        self.c = c
        self.counts = Counts()
        self.changes: list[Change] = []
        # groups opened (or closed) by the operations of this transaction before the one
        # under way: counts.groups takes them at the commit, --max-groups must see them now
        self.opened = 0

    def count(self, what: str, n: int, rk: str = "", name: str = "") -> None:
        """A change of the counts, applied once the operation's transaction commits."""
        self.changes.append((what, rk, n))
        if name:
            self.changes.append(("name:" + name, rk, 0))
