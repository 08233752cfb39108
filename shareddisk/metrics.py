"""Prometheus metrics for ``run --metrics-address HOST:PORT``.

Built on prometheus_client (well-kept, and it gets histogram buckets and the
text format right).  It is imported only when metrics are asked for: its
import costs ~0.3 s, which every other command would pay for nothing.

Most values are read from the daemon at scrape time (a custom collector), so
the heartbeat loop pays only for one histogram observation per write round.

    shareddisk_heartbeat_write_seconds      histogram of one slot write (per disk)
    shareddisk_peer_age_seconds{peer}       since the peer's counter last moved
    shareddisk_peer_state{peer,state}       1 for the peer's current state
    shareddisk_disks / _disks_writable      disks given / written in the last round
    shareddisk_quorum                       1 while a majority of disks is writable
    shareddisk_failovers_total              resources this node took over
    shareddisk_replays_total                interrupted operations this node finished
    shareddisk_lease_holder{resource}       node id holding the resource's lease (0: free)
    shareddisk_disk_up{disk}                1 while the last read and write of the disk worked
    shareddisk_disk_io_seconds{disk,op}     histogram of every read / write of the disk
    shareddisk_disk_errors_total{disk,op}   reads / writes of the disk that failed
    shareddisk_replica_lagging{disk}        1 once the disk missed, failed or garbled a copy of
                                            the replicated resource structures (its warning)
    shareddisk_replica_stale_sectors_total{disk}  sectors found older or damaged on the disk
    shareddisk_renewal_margin_seconds       time left before this node must fence itself
                                            (renew deadline - now; fences at 0)
    shareddisk_build_info{version,python}   1, with the versions as labels
    process_* / python_*                    the client's process and platform collectors
                                            (CPU, memory, open files, start time)
    shareddisk_watchdog_timeout_seconds     granted hardware watchdog timeout (0: unwatched)
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Iterator

from shareddisk.device import WriteGate
from shareddisk.errors import UsageError
from shareddisk.membership import PeerState
from shareddisk.replicas import ReplicatedDevice

if TYPE_CHECKING:
    from shareddisk.daemon import Daemon


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise UsageError(f"bad --metrics-address {text!r}: use HOST:PORT, e.g. 127.0.0.1:9464")
    return host or "127.0.0.1", int(port)


class Metrics:
    """The registry, the write-latency histogram and counters of one daemon."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.prom = prom
        self.registry = prom.CollectorRegistry()
        self.write_seconds = prom.Histogram(
            "shareddisk_heartbeat_write_seconds", "Time of one heartbeat slot write",
            ["disk"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.io_seconds = prom.Histogram(
            "shareddisk_disk_io_seconds", "Time of one read or write of a shared disk",
            ["disk", "op"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.io_errors = prom.Counter(
            "shareddisk_disk_errors", "Reads or writes of a shared disk that failed",
            ["disk", "op"], registry=self.registry)
        prom.ProcessCollector(registry=self.registry)
        prom.PlatformCollector(registry=self.registry)
        import platform

        from shareddisk import __version__
        build = prom.Gauge("shareddisk_build_info", "Versions of this daemon (value 1)",
                           ["version", "python"], registry=self.registry)
        build.labels(version=__version__, python=platform.python_version()).set(1)
        self._server: Any = None

    def attach(self, daemon: "Daemon") -> None:
        self.registry.register(_DaemonCollector(daemon, self.prom))
        daemon.node.write_observer = lambda disk, seconds: \
            self.write_seconds.labels(disk=disk).observe(seconds)
        for area in daemon.areas:  # measured inside the write gate: refusals are not I/O
            if isinstance(area.device, WriteGate):
                area.device.inner = _Measured(area.device.inner, self)
            else:
                area.device = _Measured(area.device, self)

    def serve(self, address: str) -> tuple[str, int]:
        host, port = parse_address(address)
        try:
            self._server, thread = self.prom.start_http_server(port, addr=host,
                                                               registry=self.registry)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on {address}: {exc.strerror}") from None
        return host, self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            threading.Thread(target=self._server.shutdown, daemon=True).start()


class _Measured:
    """A device whose reads and writes are timed and whose failures are counted."""

    def __init__(self, inner: Any, metrics: Metrics):
        import time

        self.inner = inner
        path = inner.path
        self._time = {op: metrics.io_seconds.labels(disk=path, op=op) for op in ("read", "write")}
        self._errors = {op: metrics.io_errors.labels(disk=path, op=op) for op in ("read", "write")}
        self._clock = time.perf_counter  # a duration for a histogram, never a deadline

    def __getattr__(self, name: str) -> Any:  # path, sector_size, size, flush ...
        return getattr(self.inner, name)

    def read(self, offset: int, length: int) -> bytes:
        begun = self._clock()
        try:
            data = self.inner.read(offset, length)
        except Exception:
            self._errors["read"].inc()
            raise
        self._time["read"].observe(self._clock() - begun)
        return data

    def write(self, offset: int, data: Any) -> None:
        begun = self._clock()
        try:
            self.inner.write(offset, data)
        except Exception:
            self._errors["write"].inc()
            raise
        self._time["write"].observe(self._clock() - begun)


class _DaemonCollector:
    """Reads the daemon's state when Prometheus scrapes."""

    def __init__(self, daemon: "Daemon", prom: Any):
        self.daemon = daemon
        from prometheus_client import core

        self.core = core

    def collect(self) -> Iterator[Any]:
        core = self.core
        node = self.daemon.node
        now = node.clock.monotonic()
        age = core.GaugeMetricFamily("shareddisk_peer_age_seconds",
                                     "Seconds since the peer's counter last moved", labels=["peer"])
        state = core.GaugeMetricFamily("shareddisk_peer_state", "Peer state (1 = current)",
                                       labels=["peer", "state"])
        for peer in list(node.membership.peers.values()):
            value = peer.age(now)
            if value is not None:
                age.add_metric([str(peer.node_id)], value)
            for s in PeerState:
                state.add_metric([str(peer.node_id), s.value], 1.0 if peer.state is s else 0.0)
        yield age
        yield state
        writable = sum(1 for d in node.disks if d.write_ok)
        yield core.GaugeMetricFamily("shareddisk_disks", "Disks given", value=len(node.disks))
        yield core.GaugeMetricFamily("shareddisk_watchdog_timeout_seconds",
                                     "Granted hardware watchdog timeout (0: unwatched)",
                                     value=node.timeouts.watchdog)
        yield core.GaugeMetricFamily("shareddisk_disks_writable",
                                     "Disks written in the last round", value=writable)
        yield core.GaugeMetricFamily("shareddisk_quorum", "1 while a majority is writable",
                                     value=1.0 if writable >= len(node.disks) // 2 + 1 else 0.0)
        up = core.GaugeMetricFamily("shareddisk_disk_up",
                                    "1 while the last read and write of the disk worked",
                                    labels=["disk"])
        for disk in node.disks:
            up.add_metric([disk.path], 1.0 if disk.read_ok and disk.write_ok else 0.0)
        yield up
        replicated = self.daemon.records.device
        if isinstance(replicated, ReplicatedDevice):
            lagging = core.GaugeMetricFamily(
                "shareddisk_replica_lagging", "1 once the disk missed, failed or garbled a "
                "copy of the replicated resource structures", labels=["disk"])
            stale = core.CounterMetricFamily(
                "shareddisk_replica_stale_sectors", "Sectors of the replicated resource "
                "structures found older or damaged on the disk", labels=["disk"])
            for s in replicated.states:
                lagging.add_metric([s.path], 1.0 if s.lagging else 0.0)
                stale.add_metric([s.path], s.stale_sectors + s.damaged_sectors)
            yield lagging
            yield stale
        if node.renewed_since is not None:
            yield core.GaugeMetricFamily(
                "shareddisk_renewal_margin_seconds",
                "Seconds left before this node must fence itself (renew deadline - now)",
                value=node.renewed_since + node.timeouts.renew_fail - now)
        holders = core.GaugeMetricFamily("shareddisk_lease_holder",
                                         "Node id holding the resource lease (0: free)",
                                         labels=["resource"])
        for name, holder in self.daemon.config.lease_holders().items():
            holders.add_metric([name], float(holder))
        yield holders
        counts = self.daemon.manager.counts
        yield core.CounterMetricFamily("shareddisk_failovers", "Resources this node took over",
                                       value=counts["failovers"])
        yield core.CounterMetricFamily("shareddisk_replays",
                                       "Interrupted operations this node finished",
                                       value=counts["replays"])
