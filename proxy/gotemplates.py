"""Alertmanager's notification templates (Go text/template) as the rules' Jinja2, for
`alert-proxy import`: the forms receivers commonly use, and nothing else.

    {{ .CommonLabels.x }}  {{ .CommonAnnotations.x }}  {{ .GroupLabels.x }}
    {{ index .CommonLabels "x" }}   {{ .Status }}   {{ .Alerts.Firing | len }}
    {{ len .Alerts }}   {{ .ExternalURL }} (nothing: the proxy has none)
    {{ range .Alerts }} ... {{ .Labels.x }} {{ .Annotations.x }} {{ .Status }} ... {{ end }}
    {{ range .Alerts.Firing }} / .Resolved      {{ if X }} {{ else if X }} {{ else }} {{ end }}
    {{ if eq X "v" }}, ne, and, or, not         pipes: toUpper, toLower, title, trimSpace
    {{ template "pagerduty.default.description" . }} and the other pagerduty.default.*
    templates: their meaning (see DEFAULTS)

Anything else raises `Untranslatable` naming the action: the importer lists it with its
line, and the rule keeps the proxy's default for that field."""

from __future__ import annotations

import re

__all__ = ["DEFAULTS", "Untranslatable", "translate"]

# What Alertmanager's pagerduty.default.* templates mean, in the proxy's terms (`subject`
# is its default description, `[FIRING:3] HighLatency checkout (…)`); None where the proxy
# has no such thing.
DEFAULTS: dict[str, str | None] = {
    "pagerduty.default.description": "{{ subject }}", "__subject": "{{ subject }}",
    "pagerduty.default.client": "Alertmanager",
    "pagerduty.default.clientURL": None,  # Alertmanager's own alerts page: the proxy has none
    "pagerduty.default.instances": None,
}

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.DOTALL)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_FIELD = {".CommonLabels": "labels", ".CommonAnnotations": "annotations", ".GroupLabels": "group_labels"}
_IN_RANGE = {".Labels": "a.labels", ".Annotations": "a.annotations"}
_PIPES = {"toUpper": "upper", "toLower": "lower", "title": "title", "trimSpace": "trim", "len": "length"}
_SIMPLE = {".Status": "('firing' if num_firing else 'resolved')", ".Alerts.Firing": "alerts_firing",
           ".Alerts.Resolved": "alerts_resolved", ".Alerts": "alerts", ".ExternalURL": "''",
           ".Receiver": "rule"}


class Untranslatable(ValueError):
    """A template action the importer cannot express in the rules' templates."""


def _term(tok: str, in_range: bool) -> str:
    if tok.startswith('"') and tok.endswith('"'):
        return tok
    if re.fullmatch(r"-?\d+(\.\d+)?", tok):
        return tok
    if in_range:
        if tok == ".Status":
            return "a.status"
        if tok == ".StartsAt":
            return "a.starts_at"
        for go, jinja in _IN_RANGE.items():
            if m := re.fullmatch(re.escape(go) + r"\.(" + _IDENT + ")", tok):
                return f"{jinja}.{m.group(1)}"
    for go, jinja in _FIELD.items():
        if m := re.fullmatch(re.escape(go) + r"\.(" + _IDENT + ")", tok):
            return f"{jinja}.{m.group(1)}"
    if tok in _SIMPLE:
        return _SIMPLE[tok]
    raise Untranslatable(tok)


def _expr(text: str, in_range: bool) -> str:
    """A pipeline: `f a b | g | h` (Go) as Jinja."""
    stages = [s.strip() for s in text.split("|")]
    first = stages[0].split()
    if not first:
        raise Untranslatable(text)
    head = first[0]
    if head == "index" and len(first) == 3 and first[1] in _FIELD:
        value = f"{_FIELD[first[1]]}[{first[2]}]"
    elif head == "len" and len(first) == 2:
        value = f"({_term(first[1], in_range)} | length)"
    elif head in ("eq", "ne") and len(first) == 3:
        op = "==" if head == "eq" else "!="
        value = f"({_term(first[1], in_range)} {op} {_term(first[2], in_range)})"
    elif head in ("and", "or") and len(first) >= 3:
        value = "(" + f" {head} ".join(_term(t, in_range) for t in first[1:]) + ")"
    elif head == "not" and len(first) == 2:
        value = f"(not {_term(first[1], in_range)})"
    elif len(first) == 1:
        value = _term(head, in_range)
    else:
        raise Untranslatable(text)
    for stage in stages[1:]:
        if stage not in _PIPES:
            raise Untranslatable(text)
        value = f"({value} | {_PIPES[stage]})"
    return value


def translate(source: str) -> str | None:
    """`source` (a Go template) as a Jinja2 template; None when it means the proxy's own
    default (Alertmanager's default template); Untranslatable otherwise."""
    if m := re.fullmatch(r'\s*{{-?\s*template\s+"([^"]+)"\s+\.\s*-?}}\s*', source):
        if m.group(1) not in DEFAULTS:
            raise Untranslatable(f'template "{m.group(1)}"')
        default = DEFAULTS[m.group(1)]
        return None if default is None else default
    out: list[str] = []
    stack: list[str] = []  # "range" | "if"
    pos = 0
    for m in _ACTION.finditer(source):
        out.append(source[pos:m.start()].replace("{#", "{{ '{#' }}"))
        pos = m.end()
        action = m.group(1)
        in_range = "range" in stack
        words = action.split(None, 1)
        verb = words[0] if words else ""
        rest = words[1] if len(words) > 1 else ""
        if verb == "range":
            what = {".Alerts": "alerts", ".Alerts.Firing": "alerts if a.status == 'firing'",
                    ".Alerts.Resolved": "alerts if a.status == 'resolved'"}.get(rest)
            if what is None or in_range:
                raise Untranslatable(action)
            out.append(f"{{% for a in {what} %}}")
            stack.append("range")
        elif verb == "if":
            out.append(f"{{% if {_expr(rest, in_range)} %}}")
            stack.append("if")
        elif verb == "else" and rest.startswith("if "):
            out.append(f"{{% elif {_expr(rest[3:], in_range)} %}}")
        elif verb == "else" and not rest:
            out.append("{% else %}")
        elif verb == "end" and stack:
            out.append("{% endfor %}" if stack.pop() == "range" else "{% endif %}")
        elif verb in ("template", "define", "block", "with", "end", "else") or action.startswith("/*"):
            raise Untranslatable(action)
        else:
            out.append(f"{{{{ {_expr(action, in_range)} }}}}")
    if stack:
        raise Untranslatable(f"{stack[-1]} without end")
    out.append(source[pos:])
    text = "".join(out)
    return text.replace("alerts_firing", "(alerts | selectattr('status', 'equalto', 'firing') | list)") \
        .replace("alerts_resolved", "(alerts | selectattr('status', 'equalto', 'resolved') | list)")
