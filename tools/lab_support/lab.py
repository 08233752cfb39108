"""The lab as a whole: its directory, its disks, its guests and what the
host sees of them (membership through ``shareddisk status`` on the images,
the workload through the data image).

Everything lives under one directory (``.lab/`` in the checkout):
``lab.json`` (what ``up`` started: pids, QEMU command lines),
``config.json`` (read by the guest agents), ``initrd.gz``, the images
``area<K>.img`` and ``data.img``, and ``g<N>/`` per guest (console.log,
qemu.log, agent.log, daemon.log, workload.log and the sockets).
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import threading
import time
from pathlib import Path

from lab_support import guests, initramfs
from lab_support.guests import Agent, Guest, LabError
from lab_support.qmp import QMP
from lab_support.stamps import BLOCK, DATA_SIZE, Checker, Seen, region_offset

ROOT = Path(__file__).resolve().parent.parent.parent
RESOURCE = "sg1"
INTERVAL = 1.0  # heartbeat interval: TCG guests are slow, the lab keeps the default
BOOT_TIMEOUT = 240.0
WATCHDOG = "/dev/watchdog"  # the guest's i6300esb (guests.qemu_argv)


def shareddisk_bin() -> Path:
    return ROOT / ".venv" / "bin" / "shareddisk"


def ensure_venv() -> None:
    if not shareddisk_bin().exists():
        subprocess.run(["bash", "-c", ". tools/_venv.sh"], cwd=ROOT, check=True)


def cli_has_watchdog() -> bool:
    out = subprocess.run([str(shareddisk_bin()), "run", "--help"], capture_output=True,
                         text=True).stdout
    return "--watchdog" in out


class Lab:
    def __init__(self, directory: Path | None = None, say=print):
        self.dir = (directory or ROOT / ".lab").resolve()
        self.say = say
        self.state_path = self.dir / "lab.json"
        self.state: dict = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self._qmp: dict[int, QMP] = {}
        self._agents: dict[int, Agent] = {}
        self.t0 = time.monotonic()

    # -- what up recorded ---------------------------------------------------------------

    @property
    def nodes(self) -> list[int]:
        return sorted(int(n) for n in self.state.get("guests", {}))

    @property
    def disks(self) -> list[Path]:
        return [self.dir / f"area{i}.img" for i in range(self.state.get("disks", 1))]

    @property
    def data(self) -> Path:
        return self.dir / "data.img"

    def guest(self, node: int) -> Guest:
        g = self.state["guests"][str(node)]
        return Guest(node, self.dir / f"g{node}", g.get("pid"))

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.state_path)

    def log(self, text: str) -> None:
        self.say(f"{time.monotonic() - self.t0:7.2f}s  {text}")

    # -- up / down ----------------------------------------------------------------------

    def create(self, n: int, disks: int, *, fencing: bool = True) -> None:
        """Fresh images, initramfs and configuration for n guests."""
        why = guests.missing()
        if why:
            raise LabError(why)
        if any(self.guest(node).alive() for node in self.nodes):
            raise LabError(f"a lab is already up in {self.dir} (tools/lab down first)")
        ensure_venv()
        self.dir.mkdir(parents=True, exist_ok=True)
        if str(self.dir).startswith(("/tmp/", "/run/", "/var/tmp/", "/var/lib/", "/proc/", "/dev/")):
            raise LabError(f"lab directory {self.dir}: the guests mount tmpfs over that path")
        kernel = guests.find_kernel()
        initramfs.build(self.dir / "initrd.gz", kernel)
        sd = str(shareddisk_bin())
        for area in [self.dir / f"area{i}.img" for i in range(disks)]:
            area.unlink(missing_ok=True)
        areas = [str(self.dir / f"area{i}.img") for i in range(disks)]
        subprocess.run([sd, "init", *areas, "--nodes", str(n), "--size", "16M",
                        "--interval", str(INTERVAL), "--force"], check=True,
                       stdout=subprocess.DEVNULL)
        with open(self.data, "wb") as f:
            f.truncate(0)
            f.truncate(DATA_SIZE)
        subprocess.run([sd, "resource", "add", ",".join(areas), RESOURCE, "--type", "storage-group",
                        "--failover-nodes", ",".join(map(str, range(1, n + 1))),
                        "--attr", "driver=exec",
                        "--attr", f"exec_script={ROOT / 'tools' / 'lab_support' / 'workload'}",
                        "--attr", "lab_data=/run/lab/dev/data",
                        "--attr", "lab_areas=" + ",".join(f"/run/lab/dev/area{i}"
                                                         for i in range(disks)),
                        "--attr", "exec_timeout=60", "--node-id", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        # The guests' i6300esb is /dev/watchdog.  Without fencing the daemon must not
        # arm it either (a daemon that fences by exiting leaves it armed: the guest
        # would reset and stop the writer the check is meant to catch).
        watchdog = (WATCHDOG if fencing else "none") if cli_has_watchdog() else None
        config = {"disks": disks, "shareddisk": sd, "fence": "reboot" if fencing else "exit",
                  "unfenced": not fencing, "watchdog": watchdog}
        (self.dir / "config.json").write_text(json.dumps(config, indent=1))
        self.state = {"disks": disks, "kernel": str(kernel), "config": config,
                      "guests": {str(node): {"pid": None} for node in range(1, n + 1)}}
        self.save()

    def argv(self, node: int) -> list[str]:
        return guests.qemu_argv(self.guest(node), self.dir, Path(self.state["kernel"]),
                                self.dir / "initrd.gz", self.disks, self.data,
                                ROOT / "tools" / "lab_support" / "guest_agent.py")

    def boot(self, node: int) -> None:
        g = self.guest(node)
        if g.alive():
            guests.stop(g)
        self._forget(node)
        for name in ("console.log", "agent.log", "daemon.log", "workload.log"):
            p = g.dir / name
            if p.exists() and p.stat().st_size > 4 << 20:
                p.unlink()
        guests.launch(g, self.argv(node))
        self.state["guests"][str(node)]["pid"] = g.pid
        self.save()
        self.log(f"guest {node}: QEMU started (pid {g.pid})")

    def up(self, n: int, disks: int, *, fencing: bool = True) -> float:
        """Boot n guests; returns seconds until all were members."""
        start = time.monotonic()
        self.create(n, disks, fencing=fencing)
        try:
            for node in self.nodes:
                self.boot(node)
            self.wait_members(self.nodes, BOOT_TIMEOUT)
            self.wait_writing(BOOT_TIMEOUT)
            if self.watched:  # one guest is enough (Python starts slowly under TCG)
                self.state["watchdogs"] = {str(self.nodes[0]): self.watchdog_list(self.nodes[0])}
                self.save()
        except BaseException:
            self.down()
            raise
        return time.monotonic() - start

    def down(self) -> list[int]:
        stopped = []
        for node in self.nodes:
            g = self.guest(node)
            self._forget(node)
            if g.alive():
                guests.stop(g)
                stopped.append(node)
            self.state["guests"][str(node)]["pid"] = None
        if self.state:
            self.save()
        return stopped

    def _forget(self, node: int) -> None:
        if node in self._qmp:
            self._qmp.pop(node).close()
        if node in self._agents:
            self._agents.pop(node).close()

    # -- talking to guests --------------------------------------------------------------

    def qmp(self, node: int) -> QMP:
        if node not in self._qmp:
            self._qmp[node] = QMP(self.guest(node).qmp_path)
        return self._qmp[node]

    def agent(self, node: int) -> Agent:
        if node not in self._agents:
            self._agents[node] = Agent(self.guest(node))
        return self._agents[node]

    def guest_exec(self, node: int, argv: list[str], timeout: float = 120) -> dict:
        return self.agent(node).request(op="exec", argv=argv, timeout=timeout)

    @property
    def watched(self) -> bool:
        """Whether the guests' daemons run with the guest's hardware watchdog."""
        return self.state.get("config", {}).get("watchdog") == WATCHDOG

    def watchdog_list(self, node: int) -> list[dict]:
        """``shareddisk watchdog list`` inside a guest: the devices it sees, with the
        identity and the timeout the daemon was granted (read from sysfs while in use)."""
        r = self.guest_exec(node, [self.state["config"]["shareddisk"], "watchdog", "list",
                                   "--json"])
        if r["rc"] != 0:
            raise LabError(f"guest {node}: shareddisk watchdog list exited {r['rc']}: "
                           f"{r['err'].strip()}")
        devices = json.loads(r["out"])["devices"]
        for d in devices:
            self.log(f"guest {node}: {d['device']}: {d.get('identity', '?')}, timeout "
                     f"{d.get('timeout', '?')} s, {d.get('state', 'state unknown')}")
        return devices

    def guest_areas(self) -> list[str]:
        return [f"/run/lab/dev/area{i}" for i in range(len(self.disks))]

    def close(self) -> None:
        for node in list(self._qmp) + list(self._agents):
            self._forget(node)

    # -- what the host sees -------------------------------------------------------------

    def host_status(self, window: float = 2.5) -> dict:
        p = subprocess.run([str(shareddisk_bin()), "status", *map(str, self.disks), "--json",
                            "--window", str(window)], capture_output=True, text=True)
        if not p.stdout.strip():
            raise LabError(f"shareddisk status on the images failed: {p.stderr.strip()}")
        return json.loads(p.stdout)

    def alive_members(self, status: dict) -> set[int]:
        return {n["id"] for n in status["nodes"] if n["state"] == "alive"}

    def wait_members(self, nodes: list[int], timeout: float) -> float:
        end = time.monotonic() + timeout
        want = set(nodes)
        while True:
            for node in nodes:
                g = self.guest(node)
                if not g.alive():
                    time.sleep(2.0)  # a QEMU just started may not show its command line yet
                    if not g.alive():
                        raise LabError(f"guest {node}: QEMU (pid {g.pid}) exited "
                                       f"(see {g.dir}/qemu.log)")
            alive = self.alive_members(self.host_status())
            if want <= alive:
                self.log(f"members: {sorted(alive)} alive")
                return time.monotonic()
            if time.monotonic() > end:
                raise LabError(f"nodes {sorted(want - alive)} did not join in {timeout:g} s "
                               f"(see {self.dir}/g*/daemon.log and console.log)")
            time.sleep(1.0)

    def wait_writing(self, timeout: float) -> Seen:
        """Wait until the storage group's owner writes; returns its latest block."""
        with DataWatch(self.data, self.nodes) as watch:
            last = watch.wait_new(timeout)
        if last is None:
            raise LabError(f"no node wrote to the data image in {timeout:g} s "
                           f"(see {self.dir}/g*/workload.log and daemon.log)")
        self.log(f"workload: node {last.stamp.node} writes generation {last.stamp.generation}")
        return last


class DataWatch:
    """Reads every node's region of the data image, twice per poll, and feeds
    what it sees to a Checker (lab_support/stamps.py explains the reads)."""

    def __init__(self, path: Path, nodes: list[int], every: float = 0.1):
        self.path = path
        self.nodes = nodes
        self.every = every
        self.checker = Checker()
        self.cursor = {n: 0 for n in nodes}
        self.reads = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        self._buf = mmap.mmap(-1, 8 * BLOCK)  # a writer adds ~1 block per poll
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.latest: Seen | None = None

    def __enter__(self) -> DataWatch:
        self.read_once()
        self.read_once()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)

    def read_once(self) -> None:
        read = self.reads
        found: list[tuple[int, int, bytes]] = []
        for node in self.nodes:
            at = self.cursor[node]
            while True:  # until an empty block: no block beyond it is left unseen
                n = os.preadv(self._fd, [self._buf], region_offset(node) + at * BLOCK)
                blocks = [bytes(self._buf[i * BLOCK:(i + 1) * BLOCK]) for i in range(n // BLOCK)]
                full = 0
                for b in blocks:
                    if not b.strip(b"\0"):
                        break
                    found.append((node, at + full, b))
                    full += 1
                at += full
                if full < len(blocks) or not blocks:
                    break
        now = time.monotonic()
        with self.cond:
            for node, block, data in found:
                stamp = self.checker.observe(read, now, node, block, data)
                if block >= self.cursor[node]:
                    self.cursor[node] = block + 1
                if stamp is not None:
                    seen = self.checker.seen[(node, block)]
                    if self.latest is None or seen.read > self.latest.read or (
                            seen.read == self.latest.read and seen.at >= self.latest.at):
                        self.latest = seen
            self.reads += 1
            self.cond.notify_all()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.read_once()
            self.read_once()

    def wait(self, predicate, timeout: float):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                got = predicate()
                if got:
                    return got
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def wait_new(self, timeout: float) -> Seen | None:
        """A block first seen after now."""
        start = self.reads
        return self.wait(lambda: self.latest if self.latest and self.latest.read >= start + 1
                         else None, timeout)

    def wait_generation_above(self, generation: int, timeout: float) -> Seen | None:
        def first():
            firsts = self.checker.first_writes()
            newer = [s for g, s in firsts.items() if g > generation]
            return min(newer, key=lambda s: s.read) if newer else None
        return self.wait(first, timeout)

    def blocks_since(self, read: int, generation: int | None = None) -> list[Seen]:
        with self.cond:
            return [s for s in self.checker.seen.values() if s.read >= read
                    and (generation is None or s.stamp.generation == generation)]
