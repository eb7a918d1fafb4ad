"""Rules: YAML files ops edit, compiled once, then applied to every alert.

    schema.py    load + validate YAML (file:line errors), build compiled Rules
    matchers.py  Alertmanager's matcher syntax
    templates.py sandboxed enrichment templates
    engine.py    first match wins -> placements (rule, routing key, group identity)
"""

from __future__ import annotations

from proxy.rules.engine import Placement, RuleSet
from proxy.rules.schema import load_rules

__all__ = ["Placement", "RuleSet", "load_rules"]
