"""The SQLite file: where it is (the URL), its tables, its migrations, and the rows the
tables hold turned into the model's objects and back. No state: every function here is
used by the engine (store process) or by the facade (proxy process) alike."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from proxy.errors import ConfigError, UsageError
from proxy.model import Group, GroupAlert, OutEvent
from proxy.state import GroupState
from proxy.store.codec import split_status

T = TypeVar("T")

OUTBOX = """CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, rk TEXT NOT NULL, dk TEXT NOT NULL, action TEXT NOT NULL,
  severity TEXT NOT NULL, prio INTEGER NOT NULL, body BLOB NOT NULL, key_name TEXT NOT NULL,
  attempts INTEGER NOT NULL, not_before REAL NOT NULL, enqueued_at REAL NOT NULL,
  last_error TEXT NOT NULL, lease REAL NOT NULL, head INTEGER NOT NULL, wait_until REAL NOT NULL)"""
STAMPS = "CREATE TABLE IF NOT EXISTS stamps (id INTEGER PRIMARY KEY AUTOINCREMENT, rk TEXT NOT NULL, at REAL NOT NULL)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
  key TEXT PRIMARY KEY, rule TEXT NOT NULL, routing_key TEXT NOT NULL, key_name TEXT NOT NULL,
  group_labels TEXT NOT NULL, group_interval REAL NOT NULL, resolve_wait REAL NOT NULL,
  opened_at REAL NOT NULL, due REAL NOT NULL, urgent INTEGER NOT NULL, triggered INTEGER NOT NULL,
  grown INTEGER NOT NULL, last_trigger_at REAL NOT NULL, last_flush_at REAL NOT NULL,
  overflow INTEGER NOT NULL, version INTEGER NOT NULL, last_seen REAL NOT NULL,
  n_alerts INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS groups_due ON groups(urgent, due);
CREATE TABLE IF NOT EXISTS alerts (
  gkey TEXT NOT NULL, fp TEXT NOT NULL, status TEXT NOT NULL, json TEXT NOT NULL,
  jh INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (gkey, fp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerts_held ON alerts(fp, status, jh);
CREATE TABLE IF NOT EXISTS tombs (key TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombs_until ON tombs(until);
CREATE TABLE IF NOT EXISTS marks (mark TEXT NOT NULL, fp TEXT NOT NULL, PRIMARY KEY (mark, fp))
  WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS marks_fp ON marks(fp);
{outbox};
CREATE INDEX IF NOT EXISTS ob_ready ON outbox(rk, prio, seq) WHERE head = 1 AND wait_until = 0;
CREATE INDEX IF NOT EXISTS ob_wait ON outbox(rk, wait_until) WHERE head = 1 AND wait_until > 0;
CREATE INDEX IF NOT EXISTS ob_line ON outbox(rk, dk, seq);
CREATE INDEX IF NOT EXISTS ob_age ON outbox(rk, enqueued_at);
CREATE TABLE IF NOT EXISTS dead (
  seq INTEGER PRIMARY KEY, rk TEXT NOT NULL, dk TEXT NOT NULL, action TEXT NOT NULL,
  severity TEXT NOT NULL, body BLOB NOT NULL, key_name TEXT NOT NULL, attempts INTEGER NOT NULL,
  enqueued_at REAL NOT NULL, last_error TEXT NOT NULL);
{stamps};
CREATE INDEX IF NOT EXISTS stamps_rk ON stamps(rk, at);
CREATE TABLE IF NOT EXISTS pauses (rk TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (hour INTEGER NOT NULL, field TEXT NOT NULL, n REAL NOT NULL,
  PRIMARY KEY (hour, field)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_until ON seen(until);
CREATE TABLE IF NOT EXISTS beats (name TEXT PRIMARY KEY, last REAL NOT NULL, paged INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, blob TEXT NOT NULL, ends_at REAL NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, blob TEXT NOT NULL, tries INTEGER NOT NULL,
  error TEXT NOT NULL, state TEXT NOT NULL, due REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, due, id);
CREATE TABLE IF NOT EXISTS memos (key TEXT PRIMARY KEY, value TEXT NOT NULL, until REAL NOT NULL)
  WITHOUT ROWID;
""".replace("{outbox}", OUTBOX).replace("{stamps}", STAMPS)
GROUP_COLS = ("key, rule, routing_key, key_name, group_labels, group_interval, resolve_wait, "
              "opened_at, due, urgent, triggered, grown, last_trigger_at, last_flush_at, overflow, "
              "version, last_seen, n_alerts, state")
HEAD_COLS = ("key, due, urgent, triggered, grown, last_flush_at, overflow, version, last_seen, "
             "n_alerts, group_interval, resolve_wait")
EVENT_COLS = "seq, rk, dk, action, severity, body, key_name, attempts, not_before, enqueued_at, last_error"
INSERT_EVENT = ("INSERT INTO outbox (rk, dk, action, severity, prio, body, key_name, attempts, "
                "not_before, enqueued_at, last_error, lease, head, wait_until) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?)")

Rows = tuple[list[Sequence[Any]], list[Sequence[Any]]]  # groups' rows (in order), their alerts' rows


@dataclasses.dataclass(slots=True)
class Head:
    """The fields of a group `record` reads and changes (semantics.Head)."""

    key: str
    due: float
    urgent: bool
    triggered: bool
    grown: bool
    last_flush_at: float
    overflow: int
    version: int
    last_seen: float
    n_alerts: int
    group_interval: float
    resolve_wait: float


# -- the file -------------------------------------------------------------------------------
def path_of(url: str) -> tuple[Path, str]:
    """The file and the synchronous level a sqlite:// URL names."""
    u = urlsplit(url)
    raw = (u.netloc + u.path) if u.netloc else u.path
    if not raw:
        raise ConfigError([f"--store: {url!r}: give a file, e.g. sqlite:///var/lib/alert-proxy/state.db"])
    sync = parse_qs(u.query).get("synchronous", ["full"])[0].upper()
    if sync not in ("FULL", "NORMAL", "EXTRA"):
        raise ConfigError([f"--store: {url!r}: synchronous must be full, normal or extra"])
    return Path(raw), sync


def file_of(url: str) -> Path:
    """The file a sqlite:// URL names."""
    return path_of(url)[0]


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    if fresh:
        os.chmod(path, 0o600)  # it holds routing keys
    conn.execute("PRAGMA journal_mode=WAL").fetchone()
    return conn


def check_file(url: str) -> None:
    """Open (or make) the file a sqlite:// URL names, as the store's process will: a file
    that cannot be opened is an error now (UsageError: exit 2), not a retry twice a second
    forever."""
    path = file_of(url)
    try:
        conn = _connect(path)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as e:
        raise UsageError([f"--store {url}: {path} cannot be opened: {e}"]) from None


def open_file(path: Path, sync: str) -> sqlite3.Connection:
    """The store's one connection: WAL, the URL's synchronous level, the schema made or
    brought up to date."""
    conn = _connect(path)
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA cache_size=-65536")
    # Each job runs in a savepoint; a page that an earlier job of the same transaction
    # changed is copied to the savepoint's journal first, which past 64 KB went to a
    # temporary file: 1.5 KB written per group when a busy flush puts many commits in
    # one transaction. In memory it stays at a few MB at most.
    conn.execute("PRAGMA temp_store=MEMORY")
    number_once(conn)
    hash_alerts(conn)
    conn.executescript(SCHEMA)
    return conn


def number_once(conn: sqlite3.Connection) -> None:
    """Numbers are never given twice: an event's (a dead letter keeps its number, and so
    would a later event that got it again), a budget stamp's (a late answer to a send
    settles its own stamp, not a newer one). Files written before AUTOINCREMENT gave the
    highest number again once its row was gone: their tables are copied into new ones, and
    the outbox's sequence goes on from the highest number any event or dead letter had."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name, ddl in (("outbox", OUTBOX), ("stamps", STAMPS)):
            row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (name,)).fetchone()
            if row is not None and "AUTOINCREMENT" not in row[0].upper():
                conn.execute(f"ALTER TABLE {name} RENAME TO {name}_before_autoincrement")
                conn.execute(ddl)
                conn.execute(f"INSERT INTO {name} SELECT * FROM {name}_before_autoincrement")
                conn.execute(f"DROP TABLE {name}_before_autoincrement")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'dead'").fetchone():
            top = conn.execute("SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM outbox UNION ALL "
                               "SELECT MAX(seq) FROM dead)").fetchone()[0] or 0
            if conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'outbox'",
                            (top,)).rowcount == 0 and top:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (top,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def hash_alerts(conn: sqlite3.Connection) -> None:
    """The alerts' rows carry a hash of their JSON (`jh`), in the fingerprint index with
    their status, so that recording an alert a group holds reads the index alone, not the
    table too (windows.Windows._held; ~3 µs less per alert). Files written before have
    neither: the column is added (0: not known, so each alert's next repeat is written
    once) and the index replaced."""
    cols = [row[1] for row in conn.execute("PRAGMA table_info(alerts)")]
    if cols and "jh" not in cols:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE alerts ADD COLUMN jh INTEGER NOT NULL DEFAULT 0")
            conn.execute("DROP INDEX IF EXISTS alerts_fp")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


# -- rows -----------------------------------------------------------------------------------
def chunks(items: Sequence[T], n: int = 400) -> Iterable[Sequence[T]]:
    """`items` in slices small enough for one `IN (?, ...)`."""
    for i in range(0, len(items), n):
        yield items[i:i + n]


def marks(n: int) -> str:
    """`?,?,...`: n placeholders."""
    return ",".join("?" * n)


def event_of(row: Sequence[Any]) -> OutEvent:
    seq, rk, dk, action, severity, body, key_name, attempts, not_before, enq, err = row
    return OutEvent(routing_key=rk, dedup_key=dk, action=action, severity=severity, body=bytes(body),
                    key_name=key_name, seq=seq, attempts=attempts, not_before=not_before,
                    enqueued_at=enq, last_error=err)


def event_row(ev: OutEvent) -> tuple[Any, ...]:
    """An event as OutEvent(*row) makes it again (pickled faster than the dataclass)."""
    return (ev.routing_key, ev.dedup_key, ev.action, ev.severity, ev.body, ev.key_name, ev.seq,
            ev.attempts, ev.not_before, ev.enqueued_at, ev.last_error)


def group_of(row: Sequence[Any]) -> Group:
    (key, rule, rk, name, labels, gi, rw, opened, due, urgent, trig, grown, ltr, lfl,
     overflow, version, seen, n_alerts, state) = row
    return Group(key=key, rule=rule, routing_key=rk, key_name=name,
                 group_labels=orjson.loads(labels), group_interval=gi, resolve_wait=rw,
                 opened_at=opened, due=due, triggered=bool(trig), grown=bool(grown),
                 last_trigger_at=ltr, last_flush_at=lfl, overflow=overflow, version=version,
                 last_seen=seen, urgent=bool(urgent), state=GroupState.from_json(state),
                 n_alerts=n_alerts)


def groups_of(rows: Rows) -> list[Group]:
    """Groups from what the engine read (built in the proxy: the store's process only
    reads rows)."""
    group_rows, alert_rows = rows
    groups = [group_of(row) for row in group_rows]
    by_key = {g.key: g for g in groups}
    for gkey, fp, raw, js in alert_rows:
        status, changes = split_status(raw)
        by_key[gkey].alerts[fp] = GroupAlert.from_json(js, status, changes)
    return groups
