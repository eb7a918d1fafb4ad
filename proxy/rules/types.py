"""What a rules file says, once loaded: the rules (each with every setting resolved from
the defaults and its parents), inhibit rules, maintenance windows, webhook sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from proxy.ingest.webhook import Mapping
from proxy.rules.matchers import Matcher
from proxy.rules.suppress import Inhibit, Maintenance
from proxy.rules.templates import JsonBody, Template

if TYPE_CHECKING:
    from proxy.rules.actions import Action

ALL_LABELS = ("...",)
MAX_FLAP_CHANGES = 20  # the stores keep this many status changes per alert


@dataclass(frozen=True, slots=True)
class Flap:
    """An alert that changed state `changes` times within `within` seconds is flapping;
    its group pages once and stays open until it has been stable for `hold` seconds."""

    changes: int
    within: float
    hold: float


@dataclass(frozen=True, slots=True)
class Remediate:
    """Call an automatic fix when a group would first page, and hold the page for `wait`:
    if the group resolves meanwhile nobody is paged. `url`, `headers` and `body` are
    templates over the group (as the enrichment templates); `${VAR}` in them is read from
    the environment when the rules load (tokens stay off the rule files)."""

    url: Template
    method: str
    headers: dict[str, Template]
    body: Template | JsonBody | None  # a string (values JSON-escaped) or a YAML mapping
    timeout: float
    wait: float
    secrets: tuple[str, ...] = ()  # the values ${VAR} gave: never shown in a page or a log


@dataclass(frozen=True, slots=True)
class Storm:
    """More than `groups` groups opening on one routing key within `within` seconds: the
    rest fold into one storm incident per key until it is calm (no new group for `within`)."""

    groups: int
    within: float


@dataclass(slots=True)
class Rule:
    """One compiled rule; `defaults` is a Rule too, with every setting filled in."""

    name: str
    matchers: list[Matcher] = field(default_factory=list)
    cont: bool = False
    drop: bool = False
    routing_key: str | None = None
    own_key: bool = False  # the rule itself names a key (beats an Events v2 sender's key)
    key_name: str = ""  # what logs and metrics show instead of the key
    severity: str | None = None
    severity_map: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 14400.0
    resolve_wait: float | None = None  # None: group_interval
    max_alerts: int = 1000
    on_growth: str = "ignore"
    summary: Template | None = None
    custom_details: dict[str, Template] = field(default_factory=dict)
    links: list[dict[str, Template]] = field(default_factory=list)
    images: list[dict[str, Template]] = field(default_factory=list)
    client: Template | None = None
    client_url: Template | None = None
    severity_template: Template | None = None  # `severity:` given as a template over each alert
    pd_class: Template | None = None  # the payload's class, component and group
    component: Template | None = None
    group: Template | None = None
    labels: dict[str, Template] = field(default_factory=dict)  # set before grouping
    flap: Flap | None = None
    min_alerts: int = 0  # page only once this many alerts fire (0: from the first) ...
    for_: float = 0.0  # ... or once the group has been firing this long (0: at once)
    stale_after: float = 0.0  # resolve a group no source refreshed for this long (0: never)
    storm: Storm | None = None  # defaults only
    remediate: Remediate | None = None
    # notes added to the incident's timeline once per incident (runbook steps, links), each a
    # template over the group; they need --pagerduty-api-token (proxy/notes.py)
    notes: list[Template] = field(default_factory=list)
    # Alertmanager's route tree: an alert the rule matches goes to the first of these that
    # matches (`continue` as among rules), or to the rule itself if none does; they inherit
    # the rule's settings
    routes: list[Rule] = field(default_factory=list)
    where: str = ""  # file:line of the rule


@dataclass(slots=True)
class RuleFile:
    defaults: Rule
    rules: list[Rule]
    inhibit: list[Inhibit] = field(default_factory=list)
    maintenance: list[Maintenance] = field(default_factory=list)
    sources: dict[str, Mapping] = field(default_factory=dict)  # webhook name -> its mapping
    heartbeats: list[Heartbeat] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A dead man's switch: alerts matching `matchers` (or POSTs to /v1/heartbeat/<name>)
    are expected at least every `every`; none for `every + grace` pages once."""

    name: str
    matchers: tuple[Matcher, ...]
    every: float
    grace: float
    routing_key: str
    key_name: str
    severity: str
    summary: Template | None  # over name, every, grace, silent_for (a duration in words)

