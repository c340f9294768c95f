"""What the deployment exposes and with which privileges (issue 11, item 14).

- The proxies and MinIO run unprivileged in every stack (scripts/validate/compose.py's
  check, on the shipped stacks and on a stack that breaks each rule).
- The APP node's metrics port answers the monitoring network only: its allow list is the
  one line switch_cluster_mode.py renders from `monitoring.network`, and a real Nginx
  serving the shipped default.conf (rendered by scripts/cluster/local.sh as the local
  cluster runs it) refuses any other source and proxies the allowed one.
Run by `make validate` (the ops virtualenv; Nginx and openssl installed by it).
"""

from __future__ import annotations

import copy
import http.client
import http.server
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts/cluster"))
sys.path.insert(0, str(ROOT / "scripts/validate"))

import compose  # noqa: E402
import switch_cluster_mode as switch  # noqa: E402

NGINX_CONFS = [ROOT / "docker/nginx/conf.d/default.conf",
               ROOT / "docker/monitoring/nginx/conf.d/monitoring.conf"]  # fmt: skip


def shipped_stacks():
    for compose_files, env_files in compose.STACKS:
        label = " + ".join(compose_files)
        yield label, compose.load_stack(compose_files, env_files, [], label)


def test_proxies_and_minio_run_unprivileged_in_every_stack():
    problems, checked = [], set()
    for label, stack in shipped_stacks():
        compose.check_unprivileged(stack, problems, label)
        checked |= set(stack["services"]) & compose.UNPRIVILEGED_SERVICES
    assert problems == []
    assert checked == compose.UNPRIVILEGED_SERVICES, "a service the check names is in no stack"


def test_the_check_names_each_privilege_a_service_keeps():
    stack = dict(shipped_stacks())["docker/cluster/docker-compose.app.yml"]
    nginx = copy.deepcopy(stack["services"]["nginx"])
    del nginx["user"], nginx["cap_drop"], nginx["security_opt"]
    nginx["ports"] = ["80:80", {"target": 443, "published": 443}]
    problems = []
    compose.check_unprivileged({"services": {"nginx": nginx}}, problems, "app")
    assert problems == [
        "app: service nginx: runs as root (set `user:` to an unprivileged uid)",
        "app: service nginx: keeps its Linux capabilities (cap_drop: [ALL])",
        "app: service nginx: may gain privileges (security_opt: no-new-privileges:true)",
        "app: service nginx: listens on the privileged port 80 in the container",
        "app: service nginx: listens on the privileged port 443 in the container",
    ]


def test_nginx_listens_on_unprivileged_ports_only():
    for conf in NGINX_CONFS:
        listens = re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", conf.read_text(), re.M)
        ports = [int(port) for port in listens]
        assert ports and min(ports) >= 1024, (conf.name, ports)


def metrics_server_block() -> str:
    text = (ROOT / "docker/nginx/conf.d/default.conf").read_text()
    return re.search(r"server \{\s*listen 9443 ssl;.*?\n\}", text, re.S)[0]


def test_the_metrics_port_allows_only_the_rendered_monitoring_network():
    block = metrics_server_block()
    # No address in the shipped file: the rendered include, then deny everything else.
    assert re.findall(r"^\s*(allow|deny|include)\s+(.*);", block, re.M) == [
        ("include", "/etc/nginx/metrics-allow.d/*.conf"),
        ("deny", "all"),
    ]
    config = switch.load_config(ROOT / "configs/cluster/cluster.example.yml")
    config["monitoring"]["network"] = "10.1.2.0/28"
    rules = re.findall(r"^(allow|deny)\s+(.*);", switch.render_metrics_allowlist(config), re.M)
    assert rules == [("allow", "10.1.2.0/28")]


def test_the_app_stack_mounts_the_rendered_allow_list():
    stack = dict(shipped_stacks())["docker/cluster/docker-compose.app.yml"]
    mount = "../../configs/cluster/nginx:/etc/nginx/metrics-allow.d:ro"
    assert mount in stack["services"]["nginx"]["volumes"]


@pytest.mark.parametrize("network", ["10.0.0.1/8", "10.0.0.300/32", ""])
def test_a_bad_monitoring_network_is_reported(network):
    config = switch.load_config(ROOT / "configs/cluster/cluster.example.yml")
    config["monitoring"]["network"] = network
    assert f"monitoring.network: {network!r} is not a network like 10.0.0.30/32" in switch.validate(
        config, "multi"
    )


# --- A real Nginx -----------------------------------------------------------------------


class MetricsUpstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"apm_up 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def can_bind(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_base_port() -> int:
    # local-env.sh's layout: web at +30, Nginx at +31 (HTTP), +32 (HTTPS), +33 (metrics).
    # Below the local clusters' bases (20000+) and Linux' ephemeral ports (32768+).
    for base in range(10000, 19950, 50):
        if all(can_bind(base + offset) for offset in range(30, 34)):
            return base
    raise AssertionError("no free block of ports")


@pytest.fixture
def nginx(tmp_path):
    """The shipped nginx.conf and default.conf as the local cluster renders them, the
    monitoring network 127.0.0.2/32 (an address of the loopback); yields the ports."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is installed by `make validate`")
    state = tmp_path / "state"
    (state / "certs").mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=apm-app", "-keyout", str(state / "certs/private.key"),
         "-out", str(state / "certs/public.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    base = free_base_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CLUSTER_LOCAL_DIR": str(state),
           "CLUSTER_LOCAL_BASE_PORT": str(base),
           "CLUSTER_LOCAL_MONITORING_NETWORK": "127.0.0.2/32"}  # fmt: skip
    prefix = subprocess.run(
        ["bash", str(ROOT / "scripts/cluster/local.sh"), "render-nginx"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", base + 30), MetricsUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    process = subprocess.Popen(
        ["/usr/sbin/nginx", "-e", "stderr", "-p", prefix, "-c", f"{prefix}/nginx.conf",
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not listening(base + 33):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.1)
        yield {"https": base + 32, "metrics": base + 33}
    finally:
        process.terminate()
        process.wait(timeout=20)
        upstream.shutdown()


def get(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a throw-away certificate; TLS itself is the point
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_real_nginx_serves_metrics_to_the_monitoring_network_only(nginx):
    assert get(nginx["metrics"], "/metrics", source="127.0.0.2") == (200, b"apm_up 1\n")
    status, _ = get(nginx["metrics"], "/metrics", source="127.0.0.1")
    assert status == 403, "a source outside monitoring.network must be refused"
    status, _ = get(nginx["metrics"], "/metrics", source="127.0.0.3")
    assert status == 403
    # Nor is /metrics on the public HTTPS port, from anywhere.
    assert get(nginx["https"], "/metrics", source="127.0.0.2")[0] == 404
