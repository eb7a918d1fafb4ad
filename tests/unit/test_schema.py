"""The rules loader, in process: every error kind of tests/fixtures/invalid_rules/ gives
its exact `file:line: message` (one YAML file per error, as Alertmanager's config tests)."""

from __future__ import annotations

import pytest

from proxy.errors import ConfigError
from proxy.rules import load_rules
from tests.conftest import ROOT
from tests.support.invalid_rules import EXPECTED

INVALID = ROOT / "tests" / "fixtures" / "invalid_rules"



def test_every_error_kind_has_a_fixture():
    assert sorted(p.stem for p in INVALID.glob("*.yml")) == sorted(EXPECTED)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_loader_reports_file_line_message(kind, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("ALERT_PROXY_TEST_UNSET_VARIABLE", raising=False)
    rel = f"tests/fixtures/invalid_rules/{kind}.yml"
    with pytest.raises(ConfigError) as e:
        load_rules([rel])
    assert e.value.errors == [f"{rel}:{EXPECTED[kind]}"]


def test_every_error_of_a_file_is_reported(tmp_path):
    bad = tmp_path / "many.yml"
    bad.write_text("rules:\n  - name: a\n    severity: x\n  - name: b\n    group_wait: y\n")
    with pytest.raises(ConfigError) as e:
        load_rules([str(bad)])
    assert [ln.split(":", 2)[1] for ln in e.value.errors] == ["3", "5"]


def test_example_rules_load(monkeypatch):
    monkeypatch.setenv("PD_DB_KEY", "0123456789abcdef0123456789abcdef")
    rf = load_rules([str(ROOT / "rules")])
    assert len(rf.rules) >= 5 and rf.defaults.group_wait == 30.0
