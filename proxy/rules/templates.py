"""Enrichment templates: Jinja2 in its sandbox, compiled when the rules load.

Where a template's text goes decides how each value is written (`escape`):
- "url": each value URL-encoded whole (`/`, `?`, `&` too; a value of `.` or `..` as
  %2E), so a label cannot climb out of its path segment or add a query parameter;
- "json": each value JSON-escaped, so a label cannot close its string and add keys
  (a body given as a YAML mapping is better still: `JsonBody` serialises it);
- "header": line breaks become spaces (a value cannot add a header);
- "": as it is (a page's text).

A template may only name what its context holds (`check` and `test` say so before a page
ever carries "(template error ...)"): a group's templates see ENRICH_NAMES, a rule's
`labels` templates see ALERT_NAMES. An error while rendering (a filter given the wrong
type, say) never stops a page: the text shows it, the error is logged and counted, and
`alert-proxy test` fails the rule test."""

from __future__ import annotations

import difflib
import logging
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from proxy.jsontypes import JsonObject

__all__ = ["ALERT_NAMES", "ENRICH_NAMES", "ESCAPES", "RENDER_ERRORS", "SOURCE_NAMES", "JsonBody",
           "Template", "compile_template"]

log = logging.getLogger("alert_proxy")
ENRICH_NAMES = ("alert", "alerts", "annotations", "group_labels", "labels", "num_firing",
                "num_resolved", "rule", "subject")
ALERT_NAMES = ("annotations", "labels", "severity", "source", "summary")
SOURCE_NAMES = ("body", "item", "sns")  # a webhook mapping's templates (ingest/webhook.py)
RENDER_ERRORS: list[str] = []  # errors while rendering, for rule tests (cleared by them)

# a missing field renders as nothing, however deep (labels.a.b), and so does a JSON null
_ENV = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False, trim_blocks=True,
                            finalize=lambda v: "" if v is None else v)
_STRICT_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _url_value(v: Any) -> str:
    text = "" if v is None else str(v)
    if text.strip(".") == "" and text:
        return "%2E" * len(text)  # `.` and `..` would be path steps
    return quote(text, safe="")


def _json_value(v: Any) -> str:
    return orjson.dumps("" if v is None else str(v)).decode()[1:-1]


def _header_value(v: Any) -> str:
    return ("" if v is None else str(v)).replace("\r", " ").replace("\n", " ")


def _env(finalize: Any) -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False, trim_blocks=True,
                                finalize=finalize)


_ESCAPED = {"url": _env(_url_value), "json": _env(_json_value), "header": _env(_header_value)}
ESCAPES = ("", *_ESCAPED)


class Template:
    """A compiled template; a plain string without `{{`/`{%` renders as itself."""

    __slots__ = ("_tpl", "escape", "source")

    def __init__(self, source: str, escape: str = "") -> None:
        self.source, self.escape = source, escape
        env = _ESCAPED[escape] if escape else _ENV
        self._tpl = env.from_string(source) if ("{{" in source or "{%" in source) else None

    def render(self, context: JsonObject) -> str:
        if self._tpl is None:
            return self.source
        try:
            return self._tpl.render(context)
        except Exception as e:  # noqa: BLE001 - whatever a template raises, the page still goes
            RENDER_ERRORS.append(f"{self.source!r}: {e}")
            del RENDER_ERRORS[:-100]
            log.warning("template error", extra={"fields": {"template": self.source, "error": str(e)}})
            return f"{self.source} (template error: {e})"

    def render_strict(self, context: JsonObject) -> str:
        """Render, or ValueError: for input mapped by a template, where an error is the
        sender's to hear about (a 400), not a text to page with."""
        if self._tpl is None:
            return self.source
        try:
            return self._tpl.render(context)
        except Exception as e:  # noqa: BLE001 - any template failure is the input's problem
            raise ValueError(str(e)) from None


class JsonBody:
    """A JSON body given as a YAML mapping (or list): each string in it a template, the
    whole serialised with a JSON library, so that no value can change its shape."""

    __slots__ = ("shape",)

    def __init__(self, shape: Any) -> None:
        self.shape = shape  # dicts, lists, Templates and plain JSON values

    def render(self, context: JsonObject) -> str:
        def fill(node: Any) -> Any:
            if isinstance(node, Template):
                return node.render(context)
            if isinstance(node, dict):
                return {k: fill(v) for k, v in node.items()}
            if isinstance(node, list):
                return [fill(v) for v in node]
            return node

        return orjson.dumps(fill(self.shape)).decode()


def compile_template(source: str, names: tuple[str, ...] = ENRICH_NAMES, escape: str = "") -> Template:
    """Compile `source`; ValueError naming every problem if it does not parse, names a
    variable its context does not hold, or uses a filter or a test Jinja2 does not have."""
    try:
        ast = _STRICT_ENV.parse(source)
    except TemplateError as e:
        raise ValueError(f"template does not compile: {e}") from None
    problems = []
    try:
        undeclared = meta.find_undeclared_variables(ast)
    except TemplateError:  # an unknown filter or test stops Jinja2's own walk: names read
        # that the template never sets (close enough to list them with the filters)
        stored = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
        undeclared = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"} - stored
    unknown = sorted(undeclared - set(names) - set(_ENV.globals))
    if unknown:
        problems.append(f"names {_listed(unknown)}, which {'is' if len(unknown) == 1 else 'are'} "
                        f"not defined here (known: {', '.join(names)})")
    for kind, node_type, known in (("filter", nodes.Filter, _ENV.filters), ("test", nodes.Test, _ENV.tests)):
        missing = sorted({n.name for n in ast.find_all(node_type) if n.name not in known})
        if missing:
            problems.append(f"uses the {kind}{'s' * (len(missing) > 1)} {_listed(missing)}, which "
                            f"Jinja2 does not have{_did_you_mean(missing, known)}")
    if problems:
        raise ValueError("template " + "; it ".join(problems))
    try:
        return Template(source, escape)
    except TemplateError as e:  # anything the checks above did not foresee
        raise ValueError(f"template does not compile: {e}") from None


def _listed(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _did_you_mean(missing: list[str], known: Any) -> str:
    close = [m for n in missing for m in difflib.get_close_matches(n, list(known), n=1)]
    return f" (did you mean {_listed(close)}?)" if close else ""
