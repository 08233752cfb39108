"""What one simulated run looks like (:class:`SimConfig`), and the names and sizes it uses."""

from __future__ import annotations

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
    # weights of the chaos actions (0 disables one)
    weights: dict[str, float] = field(default_factory=lambda: {
        "crash": 2.0, "freeze": 2.0, "restart": 1.0, "disk_fault": 4.0, "update": 4.0,
        "op": 3.0, "move": 1.0, "message": 0.3})

    @property
    def log_disk_count(self) -> int:
        return self.log_disks or max(2, self.resources)
