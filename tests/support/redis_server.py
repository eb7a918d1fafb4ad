"""Real redis-server processes on loopback, started and stopped by the tests: one server,
one over TLS (a throw-away CA, client certificates required), a Sentinel set (master,
replica, three sentinels) and a three-master Cluster."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from tests.support.net import free_port

__all__ = ["RedisCluster", "RedisSentinel", "RedisServer", "RedisTLS"]


def _exe(name: str = "redis-server") -> str:
    exe = shutil.which(name)
    assert exe, f"{name} is not installed (tests/run.sh installs it)"
    return exe


def _ping(port: int, timeout: float = 10.0, tls: ssl.SSLContext | None = None,
          want: bytes = b"+PONG") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3) as raw:
                s = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(want):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"redis on port {port} did not answer")


def cli(port: int, *args: str) -> str:
    return subprocess.run([_exe("redis-cli"), "-p", str(port), *args], capture_output=True,
                          text=True, timeout=30, check=False).stdout


def command_calls(port: int) -> dict[str, int]:
    """Calls of each command since the server started or `CONFIG RESETSTAT` (INFO
    commandstats; the commands scripts run included): {"hset": 12, ...}."""
    out = {}
    for line in cli(port, "info", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, stats = line.removeprefix("cmdstat_").split(":", 1)
            out[name] = int(stats.split("calls=")[1].split(",")[0])
    return out


class RedisServer:
    """One redis-server: AOF on, fsync at every write (nothing acknowledged is lost)."""

    def __init__(self, workdir: Path, port: int, *extra: str) -> None:
        self.workdir, self.port, self.extra = workdir, port, list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        return [_exe(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--protected-mode", "no", "--daemonize", "no",
                "--logfile", str(self.workdir / "redis.log"), *self.extra]

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self) -> None:
        _ping(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


class RedisTLS(RedisServer):
    """TLS only (no plain port); clients must show a certificate of the test CA."""

    def __init__(self, workdir: Path, port: int) -> None:
        import trustme

        super().__init__(workdir, 0)
        self.tls_port = port
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("alert-proxy-client")
        self.ca = workdir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        for name, cert in (("server", server), ("client", client)):
            cert.cert_chain_pems[0].write_to_path(str(workdir / f"{name}.pem"))
            cert.private_key_pem.write_to_path(str(workdir / f"{name}.key"))
        self.extra = ["--tls-port", str(port), "--tls-cert-file", str(workdir / "server.pem"),
                      "--tls-key-file", str(workdir / "server.key"), "--tls-ca-cert-file", str(self.ca),
                      "--tls-auth-clients", "yes"]

    @property
    def url(self) -> str:
        w = self.workdir
        return (f"rediss://127.0.0.1:{self.tls_port}/0?ssl_ca_certs={self.ca}"
                f"&ssl_certfile={w / 'client.pem'}&ssl_keyfile={w / 'client.key'}")

    def wait_ready(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.workdir / "client.pem"), str(self.workdir / "client.key"))
        _ping(self.tls_port, tls=ctx)


class RedisSentinel:
    """A master, two replicas and three sentinels (quorum 2) watching `service`; the master
    is declared down after 1 s without answers. With two replicas, the promoted one still
    has a replica after a failover (what `wait_replicas=1` needs)."""

    service = "alert-proxy"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master = RedisServer(workdir / "a", free_port())
        self.replicas = [RedisServer(workdir / name, free_port(), "--replicaof", "127.0.0.1",
                                     str(self.master.port)) for name in ("b", "c")]
        self.servers = [self.master, *self.replicas]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> None:
        for server in self.servers:
            server.start()
        for i, port in enumerate(self.sentinel_ports):
            conf = self.workdir / f"sentinel-{i}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                            f"sentinel down-after-milliseconds {self.service} 1000\n"
                            f"sentinel failover-timeout {self.service} 4000\n"
                            f"sentinel parallel-syncs {self.service} 1\n"
                            f"logfile {self.workdir / f'sentinel-{i}.log'}\n")
            self.sentinels.append(subprocess.Popen([_exe(), str(conf), "--sentinel"],
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.sentinel_ports:
            _ping(port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # every sentinel sees both replicas and the others
            infos = [cli(p, "sentinel", "master", self.service).split() for p in self.sentinel_ports]
            if all(i[i.index("num-slaves") + 1] == "2" and i[i.index("num-other-sentinels") + 1] == "2"
                   for i in infos if "num-slaves" in i) and all("num-slaves" in i for i in infos):
                return
            time.sleep(0.2)
        raise AssertionError("the sentinels did not find the replicas")

    def master_port(self) -> int:
        out = cli(self.sentinel_ports[0], "sentinel", "get-master-addr-by-name", self.service).split()
        return int(out[1])

    def stop(self) -> None:
        for p in self.sentinels:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        for server in self.servers:
            server.stop()


class RedisCluster:
    """Three masters, the 16384 slots split between them, no replicas."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(workdir / f"n{i}", free_port(), "--cluster-enabled", "yes",
                                  "--cluster-config-file", "nodes.conf",
                                  "--cluster-port", str(free_port()),
                                  "--cluster-node-timeout", "2000")
                      for i in range(3)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        out = subprocess.run([_exe("redis-cli"), "--cluster", "create",
                              *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in cli(n.port, "cluster", "info") for n in self.nodes):
                return
            time.sleep(0.2)
        raise AssertionError("the cluster did not come up")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
