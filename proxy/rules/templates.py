"""Enrichment templates: Jinja2 in its sandbox, compiled when the rules load."""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["Template", "compile_template"]

_ENV = SandboxedEnvironment(undefined=Undefined, autoescape=False, trim_blocks=True)
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
        except TemplateError as e:  # a runtime error must never stop a page
            return f"{self.source} (template error: {e})"


def compile_template(source: str) -> Template:
    """Compile `source`; ValueError naming the template problem if it does not parse."""
    try:
        _STRICT_ENV.parse(source)
        return Template(source)
    except TemplateError as e:
        raise ValueError(f"template does not compile: {e}") from None
