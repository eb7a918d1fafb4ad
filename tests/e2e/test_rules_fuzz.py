"""Mutated rule files never crash anything (issue 30): every example file of rules/, its
keys and values changed by a seeded generator (unknown keys, wrong types, templates with
unknown names, filters and tests, broken regexes and durations, unset variables), goes
through the rules loader, `alert-proxy check`, `alert-proxy serve` at start and a hot
reload of a running proxy. A bad file is a list of `file:line` errors: `check` exits 1,
`serve` exits 1 before listening, a reload keeps the old rules, answers 400 in JSON and
sets alert_proxy_config_last_reload_successful to 0. Never a traceback."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from proxy.errors import ConfigError
from proxy.rules import load_rules
from tests.conftest import KEY, ROOT
from tests.support.net import free_port, wait_port

EXAMPLES = sorted(p for p in (ROOT / "rules").glob("*.yml") if not p.name.endswith(".test.yml"))
ENV = {"PD_ROUTING_KEY": KEY, "PD_DB_KEY": KEY, "PD_PLATFORM_KEY": KEY, "RUNDECK_TOKEN": "t",
       "AWX_TOKEN": "t", "DD_KEY": KEY}
WEIRD: list[Any] = [
    None, 0, -1, 1.5, True, [], {}, [[]], {"a": {"b": None}}, "", " ", "x" * 500,
    "{{ x | nosuchfilter }}", "{{ labels.a | uper }} {{ foo }} {{ bar }}", "{{ labels.a ",
    "{% if a is nosuchtest %}x{% endif %}", "{{ ''.__class__.__mro__ }}", "${UNSET_VARIABLE_X}",
    "30", "1.5m", "-1s", "0s", "10y", "=~\"(\"", 'alertname=~"("', "severity!~", "{a=\"b\"",
    "monday:funday", "25:00", "2026-02-30", "Mars/Olympus", "https://", "ftp://x", "critical",
    "[...]", ["a", 1, None], {"href": 3}, "\u0000", "é\u202e",
]
KEYS = ["name", "match", "matchers", "group_by", "group_wait", "severity", "routing_key", "summary",
        "links", "flap", "storm", "remediate", "drop", "continue", "routes", "labels", "inhibit",
        "maintenance", "sources", "typo_key", "groupwait", "max_alerts", "on_growth", "times"]


def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.85 and depth < 8:
        out = dict(value)
        key = rng.choice(list(out))
        move = rng.random()
        if move < 0.15:
            del out[key]
        elif move < 0.3:
            out[rng.choice(KEYS)] = rng.choice(WEIRD)
        elif move < 0.4:
            out[key + rng.choice(["_", "s", ""])] = out.pop(key)
        else:
            out[key] = mutate(out[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and rng.random() < 0.85 and depth < 8:
        out_list = list(value)
        i = rng.randrange(len(out_list))
        if rng.random() < 0.15:
            out_list.append(out_list[i])  # a duplicate (names must be unique)
        else:
            out_list[i] = mutate(out_list[i], rng, depth + 1)
        return out_list
    return rng.choice(WEIRD)


def mutated_files(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    docs = [(p.name, yaml.safe_load(p.read_text())) for p in EXAMPLES]
    out = []
    for _ in range(n):
        name, doc = rng.choice(docs)
        for _ in range(rng.randint(1, 3)):
            doc = mutate(doc, rng)
        out.append((name, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)))
    return out


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yml"):
        old.unlink()
    (folder / "00-defaults.yml").write_text((ROOT / "rules" / "00-defaults.yml").read_text())
    (folder / name).write_text(text)
    return folder


LINE = re.compile(r"^\S+\.yml(:\d+)?: .+")


def test_the_loader_raises_only_config_errors_naming_file_and_line(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    bad = 0
    for i, (name, text) in enumerate(mutated_files(600, 1)):
        folder = _write(tmp_path / "r", name, text)
        try:
            load_rules([str(folder)])
        except ConfigError as e:
            bad += 1
            assert e.errors and all(LINE.match(line) for line in e.errors), (i, text, e.errors)
    assert bad > 300  # most mutations break something


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**ENV, "PATH": "/usr/bin:/bin"}, check=False)


def test_check_and_serve_never_print_a_traceback(tmp_path):
    files = mutated_files(40, 2)
    for i, (name, text) in enumerate(files):
        folder = _write(tmp_path / f"r{i}", name, text)
        r = _cli("check", str(folder))
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr + r.stdout, (text, r.stderr)
        if r.returncode == 1 and i < 12:  # serve refuses the same file at start, the same way
            s = _cli("serve", "--listen", f"127.0.0.1:{free_port()}", "--rules", str(folder),
                     "--store", "memory://")
            assert s.returncode == 1 and "Traceback" not in s.stderr, s.stderr
            assert "listening" not in s.stderr
            assert [ln for ln in s.stderr.splitlines() if LINE.match(ln)], s.stderr


async def test_a_bad_reload_keeps_the_old_rules_and_says_why(tmp_path, fake_pd, proxy_process):
    folder = _write(tmp_path / "live", "10-kubernetes.yml", (ROOT / "rules/10-kubernetes.yml").read_text())
    port = free_port()
    proc = proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(folder), "--upstream",
                         fake_pd.url, env=ENV)
    await asyncio.to_thread(wait_port, port)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s:
        async def gauge() -> float:
            async with s.get(base + "/metrics") as r:
                text = await r.text()
            return float(next(ln.split()[-1] for ln in text.splitlines()
                              if ln.startswith("alert_proxy_config_last_reload_successful ")))

        outcomes = set()
        for name, text in mutated_files(80, 3):
            _write(folder, name, text)
            async with s.post(base + "/-/reload") as r:
                assert r.content_type == "application/json", await r.text()
                body = await r.json()
                assert r.status in (200, 400), body
            outcomes.add(r.status)
            assert await gauge() == (1.0 if r.status == 200 else 0.0)
            if r.status == 400:
                assert body["errors"] and all(LINE.match(e) for e in body["errors"]), body
        assert outcomes == {200, 400}
        # the rules in force are still served: an alert is still taken
        async with s.post(base + "/v1/alertmanager", json={"version": "4", "alerts": [
                {"status": "firing", "labels": {"alertname": "KubePodCrashLooping", "pod": "p"}}]}) as r:
            assert r.status == 200
    log = (tmp_path / "proxy.log").read_text()
    assert "Traceback" not in log and "background step failed" not in log
    assert proc.proc is not None and proc.proc.poll() is None
