"""What one simulated run looks like (:class:`SimConfig`), and the names and sizes it uses."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


MIB = 1 << 20
CLIENT_KEYS = ("k0", "k1", "k2")
VOLUME_NAMES = ("v0", "v1", "v2")
DATA_DEVICE_SIZE = 6 * MIB
# Crash points of an operation's owner, and of a successor taking over.
OP_CRASHPOINTS = ("op-after-active-log", "op-after-begin", "op-step-0-after-intent",
                  "op-step-0-after-apply", "op-step-0-after-done", "op-step-1-after-intent",
                  "op-step-1-after-apply", "op-step-1-after-done", "op-step-2-after-apply",
                  "op-after-commit")
TAKEOVER_CRASHPOINTS = ("failover-after-lease", "failover-after-owner",
                        "failover-after-storage-online", "failover-after-log-online",
                        "replay-step-0-after-intent", "replay-step-1-after-apply",
                        "replay-step-2-after-done", "replay-after-commit")


@dataclass
class SimConfig:
    """What one run looks like; everything else comes from the seed."""

    seed: int = 0
    nodes: int = 3
    disks: int = 3
    resources: int = 2
    interval: float = 1.0
    warmup: float = 10.0          # virtual seconds before chaos starts
    duration: float = 60.0        # virtual seconds of chaos
    quiet: float = 40.0           # virtual seconds without faults at the end
    chaos_rate: float = 0.5       # chaos actions per virtual second
    freeze_mode: str = "idle"     # "idle": SIGSTOP between steps; "anywhere": at any I/O
    io_latency: float = 0.002     # each I/O takes 0.1 to 1.1 times this (virtual seconds)
    log_size: int = 64
    log_disks: int = 0            # 0: one per resource (at least 2); fewer: shared, in lanes
    cli: str = "daemon"           # "daemon": requests go through the owner's daemon;
                                  # "session": the CLI's Session path (see RELIABILITY.md)
    workarounds: tuple[str, ...] = ()   # see WORKAROUNDS; run_seed() turns them all on
    chaos: bool = True
    failover: tuple[tuple[int, ...], ...] | None = None  # per resource; default: seeded order
    boot_at: tuple[float, ...] | None = None  # per node, seconds; default: seeded, within 2 s
    verbose: bool = False
    # how long taking a resource offline takes (an exec driver's offline script):
    # the fence's stop hooks take it too, and are abandoned at fence_grace's end
    offline_seconds: float = 0.0
    # a hardware watchdog on every host, with this timeout (0: none): a host whose
    # daemon stops petting it (frozen, stuck) is reset when it runs out
    watchdog: int = 0
    # what a fence action does to the rest of the host: "reset" ends every process on
    # it (the scripts of the exec driver too), "exit" ends only the daemon's process
    fence_action: str = "reset"
    # the storage driver: "image", or "exec", whose scripts are simulated processes
    # (shareddisk/sim/execdriver.py) writing the data device for these many seconds
    driver: str = "image"
    exec_online: float = 0.5
    exec_offline: float = 0.5
    exec_apply: float = 2.0
    exec_kill: bool = True        # False: nothing of the daemon kills its scripts (before
                                  # the fix: start_new_session=True and nothing else)
    # Schedule variants (issue 13, docs/RELIABILITY.md "Schedule variants"), each off
    # by default: the default schedule draws exactly what it always drew.
    # Each node's heartbeat interval, cycled over the nodes (node k gets
    # intervals[(k - 1) % len]); None: every node runs at ``interval``.
    intervals: tuple[float, ...] | None = None
    # Regions whose writes chaos may hold up for longer than any node's I/O timeout
    # (the lease's, wherever it lives: "lease" today, "paxos" in format v2); names
    # not in the layout are left out, so ("lease", "paxos") follows the lease.
    hold_regions: tuple[str, ...] = ()
    # Chaos may make one disk (for everyone, or one host's view of it) serve a
    # frozen snapshot of itself for a while: a lying read cache.
    stale_reads: bool = False
    # Chaos replaces one disk by a blank one (all zeros) once, mid-run.
    blank_disk: bool = False
    # weights of the chaos actions (0 disables one)
    weights: dict[str, float] = field(default_factory=lambda: {
        "crash": 2.0, "freeze": 2.0, "restart": 1.0, "disk_fault": 4.0, "update": 4.0,
        "op": 3.0, "move": 1.0, "message": 0.3})

    @property
    def log_disk_count(self) -> int:
        return self.log_disks or max(2, self.resources)

    def node_interval(self, node_id: int) -> float:
        """The heartbeat interval node ``node_id``'s daemon runs with."""
        if not self.intervals:
            return self.interval
        return self.intervals[(node_id - 1) % len(self.intervals)]

    @property
    def longest_interval(self) -> float:
        return max(self.intervals or (self.interval,))

    def variants(self) -> dict[str, object]:
        """The schedule variants this run has on (empty for the default schedule)."""
        out: dict[str, object] = {}
        if self.intervals:
            out["intervals"] = list(self.intervals)
        if self.hold_regions:
            out["hold_regions"] = list(self.hold_regions)
        if self.stale_reads:
            out["stale_reads"] = True
        if self.blank_disk:
            out["blank_disk"] = True
        return out


VARIANTS = ("intervals", "hold", "stale", "blank")
"""What ``tools/sim --variants`` mixes in, each seed choosing its own (:func:`mixed`)."""
MIXED_INTERVALS = (0.2, 1.0)
HOLD_REGIONS = ("lease", "paxos")  # the lease's region, v1 and v2 (the absent one is left out)


def mixed(seed: int, allowed: tuple[str, ...] = VARIANTS) -> dict[str, object]:
    """The variants seed ``seed`` runs with when ``allowed`` are mixed: each on with
    probability 1/2 (at least one), from the seed alone, so a seed reproduces."""
    rng = random.Random(f"variants:{seed}")
    chosen = [v for v in VARIANTS if v in allowed and rng.random() < 0.5]
    if not chosen:
        candidates = [v for v in VARIANTS if v in allowed]
        chosen = [candidates[rng.randrange(len(candidates))]]
    out: dict[str, object] = {}
    if "intervals" in chosen:
        out["intervals"] = MIXED_INTERVALS
    if "hold" in chosen:
        out["hold_regions"] = HOLD_REGIONS
    if "stale" in chosen:
        out["stale_reads"] = True
    if "blank" in chosen:
        out["blank_disk"] = True
    return out
