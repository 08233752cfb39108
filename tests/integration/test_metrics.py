"""``run --metrics-address``: the Prometheus endpoint of a real daemon.

Daemons at interval 0.25 s share one image; the endpoint is scraped with
urllib and parsed with prometheus_client's own text parser, so a malformed
exposition fails here.  Each metric shareddisk/metrics.py lists is checked
for a value that follows what the cluster did: the write histogram grows,
peer states and ages, quorum, the lease holder of a group once it is online,
and a failover counted on the node that took the group over.

Ports: the test asks the kernel for a free one and retries with another if
a parallel test took it first (port 0 is the better way; see the xfail).
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from daemons import PATIENCE, Cluster, Daemon, add_resource, wait_for

prometheus_parser = pytest.importorskip("prometheus_client.parser")

RESOURCE = "sg1"
EXIT_USAGE = 2
INTERVAL = 0.25  # not 0.1: a loaded CI machine must not make a daemon fence itself
PEER_STATES = {"joining", "alive", "suspect", "dead", "fenced", "left", "empty"}
# Every family shareddisk/metrics.py documents (counters without their _total).
FAMILIES = {"shareddisk_heartbeat_write_seconds", "shareddisk_peer_age_seconds",
            "shareddisk_peer_state", "shareddisk_disks", "shareddisk_disks_writable",
            "shareddisk_quorum", "shareddisk_failovers", "shareddisk_replays",
            "shareddisk_lease_holder"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scrape:
    """One parsed /metrics page: samples by (name, labels)."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(text)}
        self.samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for f in self.families.values() for s in f.samples}

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def peer_state(self, peer: int) -> list[str]:
        """The states whose gauge is 1 for this peer (exactly one when well-formed)."""
        return sorted(s for s in PEER_STATES
                      if self.get("shareddisk_peer_state", peer=str(peer), state=s) == 1.0)


def scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=PATIENCE) as resp:
        assert resp.status == 200
        assert resp.headers.get_content_type() == "text/plain"
        return Scrape(resp.read().decode())


def start_with_metrics(c: Cluster, node_id: int, *extra: str) -> tuple[Daemon, int]:
    """Start a daemon serving metrics on a free port; retry if another test took the port."""
    for _ in range(5):
        port = free_port()
        d = c.start(node_id, "--state-dir", str(c.tmp / f"state{node_id}"),
                    "--metrics-address", f"127.0.0.1:{port}", *extra)
        wait_for(lambda: d.events("metrics") or not d.running(), PATIENCE,
                 f"node {node_id} to serve metrics", d.log)
        if d.events("metrics"):
            assert d.events("metrics")[0]["address"] == f"127.0.0.1:{port}"
            return d, port
        assert d.wait_exit(PATIENCE) == EXIT_USAGE and "cannot serve metrics" in d.log(), d.log()
    raise AssertionError("no free port after 5 tries")


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, nodes=3, interval=INTERVAL)
    try:
        data = tmp_path / "data.img"
        with open(data, "wb") as f:
            f.truncate(16 << 20)
        add_resource(c, str(c.image), RESOURCE, "--type", "storage-group", "--failover-nodes",
                     "1,2", "--attr", f"data_devices:list={data}", "--node-id", "1")
        yield c
    finally:
        c.cleanup()


def test_metrics_follow_the_cluster(cluster3: Cluster) -> None:
    c = cluster3
    n1, port = start_with_metrics(c, 1)
    n1.wait_event("online", PATIENCE, resource=RESOURCE, node="1")
    n2 = c.start(2, "--state-dir", str(c.tmp / "state2"))
    n1.wait_event("peer", PATIENCE, node=1, peer=2, to="alive")

    first = wait_for(lambda: (lambda s: s if s.peer_state(2) == ["alive"]
                              and s.get("shareddisk_lease_holder", resource=RESOURCE) == 1.0
                              else None)(scrape(port)),
                     PATIENCE, "a scrape with node 2 alive and sg1 leased by node 1")
    assert FAMILIES <= set(first.families), sorted(first.families)
    assert first.families["shareddisk_heartbeat_write_seconds"].type == "histogram"
    assert first.families["shareddisk_failovers"].type == "counter"

    # The write histogram of the one disk (labelled with its path as given).
    disk = str(c.image)
    count = first.get("shareddisk_heartbeat_write_seconds_count", disk=disk)
    assert count is not None and count >= 1, first.text
    assert first.get("shareddisk_heartbeat_write_seconds_bucket", disk=disk, le="+Inf") == count
    total = first.get("shareddisk_heartbeat_write_seconds_sum", disk=disk)
    assert total is not None and 0 <= total
    later = wait_for(lambda: (lambda s: s if s.get("shareddisk_heartbeat_write_seconds_count",
                                                   disk=disk) > count else None)(scrape(port)),
                     PATIENCE, "the write count to grow")
    assert later.get("shareddisk_heartbeat_write_seconds_sum", disk=disk) >= total

    # Peers: node 2 alive with a fresh age, slot 3 empty; exactly one state each.
    assert first.peer_state(2) == ["alive"] and first.peer_state(3) == ["empty"]
    age = first.get("shareddisk_peer_age_seconds", peer="2")
    assert age is not None and 0 <= age < PATIENCE
    assert first.get("shareddisk_peer_state", peer="1", state="alive") is None  # not itself
    assert (first.get("shareddisk_disks"), first.get("shareddisk_disks_writable"),
            first.get("shareddisk_quorum")) == (1.0, 1.0, 1.0)
    assert first.get("shareddisk_lease_holder", resource=RESOURCE) == 1.0
    # Per disk: up, every read and write timed, no error; the build and the process.
    assert first.get("shareddisk_disk_up", disk=disk) == 1.0
    assert first.families["shareddisk_disk_io_seconds"].type == "histogram"
    for op in ("read", "write"):
        assert first.get("shareddisk_disk_io_seconds_count", disk=disk, op=op) >= 1, first.text
        assert first.get("shareddisk_disk_errors_total", disk=disk, op=op) == 0.0
    margin = first.get("shareddisk_renewal_margin_seconds")
    from shareddisk.timeouts import Timeouts
    assert margin is not None and 0 < margin <= Timeouts.from_interval(INTERVAL).renew_fail, \
        first.text
    import shareddisk
    assert any(name == "shareddisk_build_info" and dict(labels)["version"] ==
               shareddisk.__version__ and value == 1.0
               for (name, labels), value in first.samples.items()), first.text
    assert first.get("process_start_time_seconds") is not None
    assert first.get("process_resident_memory_bytes") > 0
    # Node 1 brought sg1 online with no previous owner: not a failover.
    assert first.get("shareddisk_failovers_total") == 0.0
    assert first.get("shareddisk_replays_total") == 0.0

    n2.proc.kill()
    n2.wait_exit(PATIENCE)
    dead = wait_for(lambda: (lambda s: s if s.peer_state(2) == ["dead"] else None)(scrape(port)),
                    PATIENCE, "node 2 dead in the metrics")
    assert dead.get("shareddisk_quorum") == 1.0  # the disk, not the peers, makes quorum


def test_failover_shows_on_the_node_that_took_over(cluster3: Cluster) -> None:
    c = cluster3
    n1 = c.start(1, "--state-dir", str(c.tmp / "state1"))
    n1.wait_event("online", PATIENCE, resource=RESOURCE, node="1")
    n2, port = start_with_metrics(c, 2)
    wait_for(lambda: scrape(port).get("shareddisk_lease_holder", resource=RESOURCE) == 1.0,
             PATIENCE, "node 2's metrics to show node 1 holding sg1")
    assert scrape(port).get("shareddisk_failovers_total") == 0.0

    n1.proc.kill()
    n1.wait_exit(PATIENCE)
    n2.wait_event("online", PATIENCE, resource=RESOURCE, node="2")
    after = wait_for(lambda: (lambda s: s if s.get("shareddisk_lease_holder",
                                                   resource=RESOURCE) == 2.0 else None)(scrape(port)),
                     PATIENCE, "node 2 holding sg1 in its metrics")
    assert after.get("shareddisk_failovers_total") == 1.0
    assert after.peer_state(1) == ["dead"]


def test_an_address_in_use_is_refused_with_one_line(cluster3: Cluster) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = cluster3.start(1, "--state-dir", str(cluster3.tmp / "state1"),
                           "--metrics-address", f"127.0.0.1:{port}")
        assert d.wait_exit(PATIENCE) == EXIT_USAGE, d.log()
    errors = [line for line in d.log().splitlines() if line.startswith("shareddisk: error:")]
    assert len(errors) == 1 and f"cannot serve metrics on 127.0.0.1:{port}" in errors[0], d.log()
    bad = cluster3.start(1, "--state-dir", str(cluster3.tmp / "state1"),
                         "--metrics-address", "localhost")
    assert bad.wait_exit(PATIENCE) == EXIT_USAGE
    assert "bad --metrics-address 'localhost'" in bad.log()


def test_port_zero_binds_a_free_port_and_logs_it(cluster3: Cluster) -> None:
    d = cluster3.start(1, "--state-dir", str(cluster3.tmp / "state1"),
                       "--metrics-address", "127.0.0.1:0")
    wait_for(lambda: d.events("metrics") or not d.running(), PATIENCE, "metrics or exit", d.log)
    assert d.running(), d.log()
    host, _, port = d.events("metrics")[0]["address"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert scrape(int(port)).get("shareddisk_quorum") == 1.0
