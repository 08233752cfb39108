"""``promtool check metrics`` on a scrape of a running daemon's endpoint.

promtool (Debian package ``prometheus``) lints an exposition the way
Prometheus' maintainers ask metrics to be named and typed (counters end in
``_total``, units in base units, HELP on every family).  A daemon with a
peer, a disk and a resource online exports every family it has; the scrape
must pass with no finding.  Skips without promtool.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from daemons import PATIENCE, Cluster, Daemon, add_resource, wait_for

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None,
                                reason="promtool is not installed (Debian package prometheus)")
INTERVAL = 0.25


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_metrics(c: Cluster, node_id: int) -> tuple[Daemon, int]:
    """A daemon serving metrics on a free port (another try if a parallel test took it)."""
    for _ in range(5):
        port = free_port()
        d = c.start(node_id, "--state-dir", str(c.tmp / f"state{node_id}"),
                    "--metrics-address", f"127.0.0.1:{port}")
        wait_for(lambda: d.events("metrics") or not d.running(), PATIENCE,
                 f"node {node_id} to serve metrics", d.log)
        if d.events("metrics"):
            return d, port
    raise AssertionError("no free port after 5 tries")


def check_metrics(page: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, "check", "metrics"], input=page, capture_output=True,
                          text=True, timeout=120)


def test_promtool_finds_nothing_to_say_about_a_scrape(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=3, interval=INTERVAL)
    try:
        data = tmp_path / "data.img"
        with open(data, "wb") as f:
            f.truncate(16 << 20)
        add_resource(c, str(c.image), "sg1", "--type", "storage-group", "--failover-nodes",
                     "1,2", "--attr", f"data_devices:list={data}", "--node-id", "1")
        n1, port = serve_metrics(c, 1)
        n1.wait_event("online", PATIENCE, resource="sg1", node="1")
        c.start(2, "--state-dir", str(tmp_path / "state2"))
        n1.wait_event("peer", PATIENCE, node=1, peer=2, to="alive")

        def page() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=PATIENCE) as resp:
                text = resp.read().decode()
            # Every family present: the lease holder, the renewal margin, peers.
            wanted = ('shareddisk_lease_holder{resource="sg1"} 1.0',
                      "shareddisk_renewal_margin_seconds", 'peer="2",state="alive"} 1.0')
            return text if all(w in text for w in wanted) else None

        text = wait_for(page, PATIENCE, "a scrape with sg1 leased and node 2 alive", c.logs)
    finally:
        c.cleanup()
    done = check_metrics(text)
    assert done.returncode == 0 and done.stdout + done.stderr == "", \
        f"exit {done.returncode}\n{done.stdout}{done.stderr}\n--- scrape ---\n{text}"
    # The lint does look: a counter named against the rules is a finding.
    bad = check_metrics("# HELP shareddisk_x_seconds x\n# TYPE shareddisk_x_seconds counter\n"
                        "shareddisk_x_seconds 1\n")
    assert bad.returncode != 0 and "_total" in bad.stdout + bad.stderr
