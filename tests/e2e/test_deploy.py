"""deploy/ stays true to the proxy: every metric its dashboard and alert rules query is
one the proxy exports, and the probes and commands it uses exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import FIXTURES, ROOT

DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\balert_proxy_[a-z_]+")


def queried_metrics() -> set[str]:
    dash = json.loads((DEPLOY / "grafana" / "alert-proxy.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alert-proxy-rules.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return {m for e in exprs for m in METRIC.findall(e)}


async def test_dashboard_and_alert_rules_query_exported_metrics(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    await client.post("/v1/alertmanager", data=(FIXTURES / "webhook_firing.body").read_bytes(),
                      headers={"Content-Type": "application/json"})
    text = await (await client.get("/metrics")).text()
    exported = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
    samples = {ln.split("{")[0].split()[0] for ln in text.splitlines() if ln and not ln.startswith("#")}
    names = queried_metrics()
    assert len(names) >= 10
    for name in names:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert name in samples or base in exported or name in exported, name


def test_probes_and_commands_exist():
    k8s = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "alert-proxy.yaml").read_text()))
    container = k8s[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][:2] == ["--listen", "0.0.0.0:8080"]
    unit = (DEPLOY / "systemd" / "alert-proxy.service").read_text()
    assert "alert-proxy serve --listen" in unit and "kill -HUP" in unit
    assert 'ENTRYPOINT ["alert-proxy", "serve"]' in (DEPLOY / "Dockerfile").read_text()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (tests/run.sh installs prometheus)")
def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    rules = DEPLOY / "prometheus"
    check = subprocess.run(["promtool", "check", "rules", "alert-proxy-rules.yml"], cwd=rules,
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(["promtool", "test", "rules", "alert-proxy-rules.test.yml"], cwd=rules,
                          capture_output=True, text=True, timeout=60, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
    tested = set(re.findall(r"alertname: (\w+)", (rules / "alert-proxy-rules.test.yml").read_text()))
    defined = set(re.findall(r"- alert: (\w+)", (rules / "alert-proxy-rules.yml").read_text()))
    assert defined == tested  # every alert rule has a test
