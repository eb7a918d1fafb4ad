"""Generic JSON webhooks (`POST /v1/webhook/{name}`): a `sources:` entry of the rules maps
any JSON body to alerts with templates (rules/sources.py compiles it).

A mapping takes the alerts from `items` (a path to a list in the body; without it the body
is one alert), skips those for which `when` renders false, checks the `require`d fields,
then renders `status` (firing or resolved), `labels` (plus `labels_from`, a path to an
object or a list of {name, value}), `annotations` (plus `annotations_from`), `summary`,
`severity`, `fingerprint`, `starts_at`, `links` and `images`. Templates see `item` (one
alert of the body), `body` (all of it) and, for a source behind Amazon SNS, `sns` (the
envelope: Subject, TopicArn, MessageId, Timestamp). A label that renders empty is left
out, as Prometheus does.

Every problem is a 400 naming the field (`'alerts[2].status' is missing`) or the mapping
key whose template failed on this input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.errors import InputError
from proxy.ingest.fields import fingerprint_of
from proxy.jsontypes import JsonObject
from proxy.model import Alert, Status

if TYPE_CHECKING:  # compiled by rules/sources.py; ingest does not load the rules package
    from proxy.rules.templates import Template

__all__ = ["Mapping", "SnsSettings", "get_path", "parse"]

_MISSING = object()
_FALSE = ("", "false", "0", "no", "none", "off")


@dataclass(frozen=True, slots=True)
class SnsSettings:
    """The body is an Amazon SNS envelope; its Message (JSON) is what the mapping reads.
    `topics`: the TopicArns taken (fnmatch patterns): a signature only proves that *some*
    AWS account's topic sent it. `cert_hosts`: hosts a SigningCertURL or SubscribeURL
    may name (`*` is one DNS label). `ca_file`: CA bundle for fetching the certificate.
    `confirm`: visit the SubscribeURL of a (verified) SubscriptionConfirmation.
    `max_age`: a message older than this (by its Timestamp) is refused as a replay."""

    topics: tuple[str, ...]
    cert_hosts: tuple[str, ...]
    ca_file: str | None = None
    confirm: bool = True
    max_age: float = 3600.0


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    status: Template
    items: tuple[str, ...] | None = None
    when: Template | None = None
    require: tuple[tuple[str, ...], ...] = ()
    labels_from: tuple[str, ...] | None = None
    labels: dict[str, Template] = field(default_factory=dict)
    annotations_from: tuple[str, ...] | None = None
    annotations: dict[str, Template] = field(default_factory=dict)
    summary: Template | None = None
    severity: Template | None = None
    fingerprint: Template | None = None
    starts_at: Template | None = None
    links: tuple[tuple[Template, Template | None], ...] = ()  # (href, text)
    images: tuple[tuple[Template, Template | None], ...] = ()  # (src, alt)
    sns: SnsSettings | None = None
    builtin: str = ""
    where: str = ""  # file:line of the sources entry


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    """`obj[a][b]...`, or _MISSING; a number indexes a list (`alerts.0.labels`)."""
    for part in path:
        if isinstance(obj, dict):
            obj = obj.get(part, _MISSING)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return _MISSING
        if obj is _MISSING:
            return obj
    return obj


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _string(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    return None


def _pairs(value: Any, where: str, errors: list[str]) -> dict[str, str]:
    """An object of scalars, or a list of {name, value} (CloudWatch dimensions, Uptime Kuma
    tags), as strings. In an object an empty value is left out; in a list a name without a
    value is a marker (a tag such as `public`) and gives "true"."""
    out: dict[str, str] = {}
    if value is _MISSING or value is None:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            s = _string(v) if v is not None else ""
            if s is None:
                errors.append(f"'{where}.{k}' must be a string")
            elif s:
                out[str(k)] = s
        return out
    if isinstance(value, list):
        for i, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            v = _string(item.get("value")) if isinstance(item, dict) and item.get("value") is not None else ""
            if not isinstance(name, str) or v is None:
                errors.append(f"'{where}[{i}]' must be an object with a string name and value")
            else:
                out[name] = v or "true"
        return out
    errors.append(f"'{where}' must be an object (or a list of {{name, value}})")
    return out


class _Item:
    """Renders one item's templates, collecting errors that name the mapping key."""

    def __init__(self, ctx: JsonObject, where: str, errors: list[str]) -> None:
        self.ctx, self.where, self.errors = ctx, where, errors

    def render(self, key: str, t: Template | None) -> str:
        if t is None:
            return ""
        try:
            return t.render_strict(self.ctx).strip()
        except ValueError as e:
            self.errors.append(f"'{self.where}': the mapping's {key} template failed on it: {e}")
            return ""


def _items(m: Mapping, body: Any, errors: list[str]) -> list[tuple[str, Any]]:
    if m.items is None:
        return [("body", body)]
    found = get_path(body, m.items)
    path = _dotted(m.items)
    if found is _MISSING or found is None:
        errors.append(f"'{path}' is missing (the list of alerts, sources '{m.name}': items)")
        return []
    if isinstance(found, dict):
        return [(path, found)]
    if not isinstance(found, list):
        errors.append(f"'{path}' must be an array of alerts")
        return []
    return [(f"{path}[{i}]", item) for i, item in enumerate(found)]


def parse(m: Mapping, body: Any, sns: JsonObject | None = None) -> list[Alert]:
    """The alerts `m` finds in `body`; InputError listing every problem."""
    if not isinstance(body, (dict, list)):
        raise InputError([f"body must be a JSON object (webhook source '{m.name}')"])
    errors: list[str] = []
    alerts: list[Alert] = []
    for where, item in _items(m, body, errors):
        if not isinstance(item, dict):
            errors.append(f"'{where}' must be an object")
            continue
        r = _Item({"item": item, "body": body, "sns": sns or {}}, where, errors)
        if m.when is not None and r.render("when", m.when).lower() in _FALSE:
            continue
        missing = [p for p in m.require if get_path(item, p) in (_MISSING, None)]
        if missing:
            prefix = "" if where == "body" else where + "."
            errors += [f"'{prefix}{_dotted(p)}' is missing" for p in missing]
            continue
        alert = _alert(m, r, item, where, errors)
        if alert is not None:
            alerts.append(alert)
    if errors:
        raise InputError(errors)
    return alerts


def _alert(m: Mapping, r: _Item, item: JsonObject, where: str, errors: list[str]) -> Alert | None:
    before = len(errors)
    status = r.render("status", m.status).lower()
    if status not in ("firing", "resolved") and len(errors) == before:
        errors.append(f"'{where}': the mapping's status gave {status!r} (it must give firing or "
                      "resolved)")
    prefix = "" if where == "body" else where + "."
    labels = _pairs(get_path(item, m.labels_from), prefix + _dotted(m.labels_from), errors) \
        if m.labels_from else {}
    for k, t in m.labels.items():
        v = r.render(f"labels.{k}", t)
        if v:
            labels[k] = v
        else:
            labels.pop(k, None)
    annotations = _pairs(get_path(item, m.annotations_from), prefix + _dotted(m.annotations_from),
                         errors) if m.annotations_from else {}
    for k, t in m.annotations.items():
        v = r.render(f"annotations.{k}", t)
        if v:
            annotations[k] = v
    if not labels and len(errors) == before:
        errors.append(f"'{where}': the mapping gave no labels (a label such as alertname is needed "
                      "to group and route it)")
    summary, severity = r.render("summary", m.summary), r.render("severity", m.severity)
    fingerprint, starts = r.render("fingerprint", m.fingerprint), r.render("starts_at", m.starts_at)
    links = [{"href": h, **({"text": t} if t else {})} for h, t in
             ((r.render("links.href", a), r.render("links.text", b)) for a, b in m.links)
             if h.startswith(("http://", "https://"))]
    images = [{"src": s, **({"alt": t} if t else {})} for s, t in
              ((r.render("images.src", a), r.render("images.alt", b)) for a, b in m.images)
              if s.startswith("https://")]  # PagerDuty shows images served over https only
    if len(errors) > before:
        return None
    st: Status = "firing" if status == "firing" else "resolved"
    return Alert(fingerprint=f"wh:{m.name}:" + (fingerprint or fingerprint_of(labels)), status=st,
                 labels=labels, source=f"webhook:{m.name}", annotations=annotations,
                 summary=summary or labels.get("alertname", ""), severity=severity or None,
                 starts_at=starts, links=links, images=images)
