"""Enrichment templates: Jinja2 in its sandbox, compiled when the rules load.

A template may only name what its context holds (`check` and `test` say so before a page
ever carries "(template error ...)"): a group's templates see ENRICH_NAMES, a rule's
`labels` templates see ALERT_NAMES. An error while rendering (a filter given the wrong
type, say) never stops a page: the text shows it, the error is logged and counted, and
`alert-proxy test` fails the rule test."""

from __future__ import annotations

import logging
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["ALERT_NAMES", "ENRICH_NAMES", "RENDER_ERRORS", "SOURCE_NAMES", "Template",
           "compile_template"]

log = logging.getLogger("alert_proxy")
ENRICH_NAMES = ("alert", "alerts", "annotations", "group_labels", "labels", "num_firing",
                "num_resolved", "rule")
ALERT_NAMES = ("annotations", "labels", "severity", "source", "summary")
SOURCE_NAMES = ("body", "item", "sns")  # a webhook mapping's templates (ingest/webhook.py)
RENDER_ERRORS: list[str] = []  # errors while rendering, for rule tests (cleared by them)

# a missing field renders as nothing, however deep (labels.a.b), and so does a JSON null
_ENV = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False, trim_blocks=True,
                            finalize=lambda v: "" if v is None else v)
_STRICT_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class Template:
    """A compiled template; a plain string without `{{`/`{%` renders as itself."""

    __slots__ = ("_tpl", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._tpl = _ENV.from_string(source) if ("{{" in source or "{%" in source) else None

    def render(self, context: dict[str, Any]) -> str:
        if self._tpl is None:
            return self.source
        try:
            return self._tpl.render(context)
        except Exception as e:  # noqa: BLE001 - whatever a template raises, the page still goes
            RENDER_ERRORS.append(f"{self.source!r}: {e}")
            del RENDER_ERRORS[:-100]
            log.warning("template error", extra={"fields": {"template": self.source, "error": str(e)}})
            return f"{self.source} (template error: {e})"

    def render_strict(self, context: dict[str, Any]) -> str:
        """Render, or ValueError: for input mapped by a template, where an error is the
        sender's to hear about (a 400), not a text to page with."""
        if self._tpl is None:
            return self.source
        try:
            return self._tpl.render(context)
        except Exception as e:  # noqa: BLE001 - any template failure is the input's problem
            raise ValueError(str(e)) from None


def compile_template(source: str, names: tuple[str, ...] = ENRICH_NAMES) -> Template:
    """Compile `source`; ValueError naming the problem if it does not parse or names a
    variable its context does not hold."""
    try:
        ast = _STRICT_ENV.parse(source)
    except TemplateError as e:
        raise ValueError(f"template does not compile: {e}") from None
    unknown = sorted(meta.find_undeclared_variables(ast) - set(names) - set(_ENV.globals))
    if unknown:
        raise ValueError(f"template names {unknown[0]!r}, which is not defined here "
                         f"(known: {', '.join(names)})")
    return Template(source)
