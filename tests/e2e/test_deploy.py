"""deploy/ stays true to the proxy: every metric its dashboard and alert rules query is
one the proxy exports, and the probes and commands it uses exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import yaml

from tests.conftest import FIXTURES, ROOT
from tests.support.net import free_port, wait_port

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


def test_every_panel_queries_the_dashboards_datasource_variable():
    dash = json.loads((DEPLOY / "grafana" / "alert-proxy.json").read_text())
    assert [v["name"] for v in dash["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    for panel in dash["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]


async def test_metrics_a_prometheus_user_expects(make_proxy, fake_pd):
    """No `_created` series; every counter's known label sets at 0 before anything
    happened; no retry for a success."""
    client = await make_proxy(fake_pd.url)
    text = await (await client.get("/metrics")).text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert not [ln for ln in lines if "_created" in ln]
    for series in ('alert_proxy_retries_total{reason="server_error"} 0.0',
                   'alert_proxy_store_errors_total{op="flush"} 0.0',
                   'alert_proxy_group_flushes_total{result="trigger"} 0.0',
                   'alert_proxy_pagerduty_webhooks_total{type="incident.acknowledged",verdict="applied"} 0.0',
                   'alert_proxy_requests_rejected_total{source="alertmanager",status="408"} 0.0'):
        assert series in lines, series
    assert not [ln for ln in lines if 'reason="success"' in ln or 'reason="dry_run"' in ln]


def test_probes_and_commands_exist():
    k8s = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "alert-proxy.yaml").read_text()))
    container = next(d for d in k8s if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][:2] == ["--listen", "0.0.0.0:8080"]
    unit = (DEPLOY / "systemd" / "alert-proxy.service").read_text()
    assert "alert-proxy serve --listen" in unit and "kill -HUP" in unit
    assert 'ENTRYPOINT ["alert-proxy", "serve"]' in (DEPLOY / "Dockerfile").read_text()
    assert "--state-dir" in (DEPLOY / "quickstart.sh").read_text()


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


def test_dockerfile_passes_hadolint_and_is_pinned():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    r = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"ARG BASE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", text)
    assert "--require-hashes -r requirements.lock" in text and text.count("FROM ") == 2
    lock = (DEPLOY / "requirements.lock").read_text()
    pinned = re.findall(r"^([a-z0-9-]+)==", lock, re.MULTILINE)
    assert {"aiohttp", "orjson", "redis", "jinja2", "pyyaml", "prometheus-client"} <= set(pinned)
    assert all(f"{name}==" in lock for name in pinned) and lock.count("--hash=sha256:") >= len(pinned)
    ignored = (ROOT / ".dockerignore").read_text()
    assert ignored.startswith("# ") and "\n*\n" in ignored and "!proxy/" in ignored  # only what the build needs


def _restricted_problems(pod: dict) -> list[str]:
    """The Pod Security "restricted" profile's rules (kubernetes.io/docs/concepts/security/
    pod-security-standards), for one pod spec."""
    out = []
    psc = pod.get("securityContext", {})
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
    for v in pod.get("volumes", []):
        if not set(v) - {"name"} <= allowed_volumes:
            out.append(f"volume {v['name']} of a forbidden type")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(flag)
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation must be false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            out.append(f"{c['name']}: capabilities must drop ALL")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: adds capabilities")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            out.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runs as root")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile must be RuntimeDefault")
        if c.get("ports") and any(p.get("hostPort") for p in c["ports"]):
            out.append(f"{c['name']}: hostPort")
    return out


def test_kubernetes_manifests_validate_and_meet_the_restricted_profile():
    validate = shutil.which("kubernetes-validate") or str(ROOT / ".venv" / "bin" / "kubernetes-validate")
    r = subprocess.run([validate, "-k", "1.30.0", str(DEPLOY / "kubernetes" / "alert-proxy.yaml")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "alert-proxy.yaml").read_text()))
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert _restricted_problems(pod) == []
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    timeout = float(c["args"][c["args"].index("--shutdown-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > timeout  # the shutdown ends before SIGKILL


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_verifies_and_scores_well(tmp_path):
    unit = DEPLOY / "systemd" / "alert-proxy.service"
    root = tmp_path / "root"  # a root where the unit's programs exist, as once installed
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "opt/alert-proxy/.venv/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system")
    shutil.copy(unit, root / "etc/systemd/system")
    shutil.copy(ROOT / ".venv" / "bin" / "alert-proxy", root / "opt/alert-proxy/.venv/bin")
    shutil.copy(shutil.which("kill") or "/bin/kill", root / "bin")
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "alert-proxy.service"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=60, check=False)
    score = float(re.search(r"Overall exposure level for alert-proxy.service: ([\d.]+)", r.stdout).group(1))
    assert score <= 2.5, r.stdout[-2000:]
    text = unit.read_text()
    assert "DynamicUser=yes" in text and "StateDirectory=alert-proxy" in text
    assert "sqlite:///var/lib/alert-proxy/state.db" in text
    stop = float(re.search(r"TimeoutStopSec=(\d+)", text).group(1))
    assert stop > float(re.search(r"--shutdown-timeout (\d+)", text).group(1))


def test_compose_file_is_compose_v2():
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    assert "version" not in compose and compose["name"] == "alert-proxy"
    for name in ("proxy-a", "proxy-b"):
        s = compose["services"][name]
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"]
        assert s["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert all(p.startswith("127.0.0.1:") for p in s["ports"])
        timeout = float(s["command"][s["command"].index("--shutdown-timeout") + 1])
        assert float(s["stop_grace_period"].rstrip("s")) > timeout
    assert "Compose v2" in (DEPLOY / "compose.yml").read_text()


def _docker_engine() -> str | None:
    """Why the container test cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker client"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    return None if r.returncode == 0 else "no Docker engine reachable (docker info failed)"


def _local_base(tmp_path) -> str:
    """The base image to build on: $ALERT_PROXY_TEST_DOCKER_BASE, or one made here from
    Debian 12 with debootstrap (registries are not reachable from the test machines)."""
    import os

    if os.environ.get("ALERT_PROXY_TEST_DOCKER_BASE"):
        return os.environ["ALERT_PROXY_TEST_DOCKER_BASE"]
    tag = "alert-proxy-test-base:bookworm"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0:
        return tag
    if shutil.which("debootstrap") is None:
        pytest.skip("no base image: set ALERT_PROXY_TEST_DOCKER_BASE or install debootstrap")
    rootfs = tmp_path / "rootfs"
    r = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", str(rootfs), "http://deb.debian.org/debian"],
                       capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0:
        pytest.skip(f"debootstrap could not make a base image: {r.stderr[-300:]}")
    # the machine's own trust store and pip's use of it (a proxy that re-signs TLS may sit
    # between this machine and PyPI)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
    (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True,
                   timeout=600)
    tar.wait()
    return tag


def test_container_builds_and_is_healthy_over_http_and_https(tmp_path):
    reason = _docker_engine()
    if reason:
        pytest.skip(f"the container is not built here: {reason}")
    import time

    import trustme

    base = _local_base(tmp_path)
    r = subprocess.run(["docker", "build", "--build-arg", f"BASE={base}", "-f", str(DEPLOY / "Dockerfile"),
                        "-t", "alert-proxy:test", str(ROOT)], capture_output=True, text=True, timeout=1200,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    tls = tmp_path / "tls"
    tls.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tls / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tls / "key.pem"))
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    for f in tls.iterdir():
        f.chmod(0o644)
    from tests.support.net import free_port

    http, https = free_port(), free_port()
    name = f"alert-proxy-test-{http}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{http}:8080",
                    "-p", f"127.0.0.1:{https}:8443", "-v", f"{tls}:/tls:ro", "-e", f"PD_ROUTING_KEY={'0' * 32}",
                    "-e", f"PD_DB_KEY={'0' * 32}", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                    "--security-opt", "no-new-privileges", "alert-proxy:test", "--listen-tls", "0.0.0.0:8443",
                    "--tls-cert", "/tls/cert.pem", "--tls-key", "/tls/key.pem", "--dry-run"],
                   check=True, capture_output=True, timeout=60)
    try:
        status = ""
        for _ in range(60):
            status = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                                    capture_output=True, text=True, check=False).stdout.strip()
            if status == "healthy":
                break
            time.sleep(1)
        assert status == "healthy", subprocess.run(["docker", "logs", name], capture_output=True,
                                                   text=True, check=False).stderr[-2000:]
        import ssl
        import urllib.request

        assert urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5).status == 200
        ctx = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        assert urllib.request.urlopen(f"https://127.0.0.1:{https}/healthz", timeout=5, context=ctx).status == 200
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_quickstart_says_what_it_does_and_installs_once(tmp_path):
    """The README's first command, in a copy of the repository: it says what it is doing
    while it installs (it was silent for ~35 s), serves on ALERT_PROXY_LISTEN with its
    state under .state/, and a second run does not install again."""
    work = tmp_path / "repo"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".venv", ".git", "data", ".state",
                                                              "test-artifacts", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT_PROXY_", "PD_", "VIRTUAL_ENV"))}

    def run(port: int) -> tuple[str, float]:
        t0 = time.monotonic()
        p = subprocess.Popen(["bash", "deploy/quickstart.sh"], cwd=work, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             env={**env, "ALERT_PROXY_LISTEN": f"127.0.0.1:{port}"})
        try:
            wait_port(port, timeout=300)
            took = time.monotonic() - t0
        finally:
            p.terminate()
            _, err = p.communicate(timeout=30)
        return err, took

    first, _ = run(free_port())
    assert "quickstart: installing alert-proxy" in first and "quickstart:   Collecting" in first, first
    assert "dry run" in first and "serving on http://127.0.0.1:" in first
    assert (work / ".state" / "state.db").is_file()
    second, took = run(free_port())
    assert "already installed" in second and "Collecting" not in second, second
    assert took < 20, took
