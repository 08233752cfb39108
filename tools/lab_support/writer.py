"""The lab workload's writer: runs on the owner of the storage group (started
by ``workload online``) and appends a stamped block to the data image every
``LAB_WRITE_INTERVAL`` seconds (0.2) until it is killed.

It learns the lease generation from the storage group definition that the
storage agent writes once online (``<state dir>/groups/<resource>.json``),
and writes with O_DIRECT | O_DSYNC so that each block reaches the shared
image at once.

Right before each block it asks the shared disks whether it still may
(gate.py: the lease still names this node's incarnation and generation, and
no peer declared the node dead), as shareddisk's image driver gates its own
writes: a host paused whole by its hypervisor resumes before its daemon's
next heartbeat round, and a writer that only relied on the daemon to fence
it would write first.  With ``/run/lab/unfenced`` (``tools/lab up
--no-fencing``) it writes ungated: the lab's way to show what the
no-stale-write check catches when nothing stops an old owner.

It imports little: Python starts slowly in an emulated
guest reading the host's files over 9p, and that start is part of every
failover the lab measures.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Started with -S (no site: it costs seconds under TCG): this checkout's shareddisk
# and its venv's packages (construct, google-crc32c) by hand, after the standard
# library, so that its modules are not first looked for in them (over 9p).
sys.path.insert(0, HERE)
sys.path += [ROOT, os.path.join(ROOT, ".venv", "lib", "python%d.%d" % sys.version_info[:2],
                                "site-packages")]
from gate import Lost, OwnerGate, Unsure, lease_holder  # noqa: E402
from stamps import BLOCK, REGION_BLOCKS, Stamp, region_offset  # noqa: E402

from shareddisk.area import Area  # noqa: E402
from shareddisk.device import open_device  # noqa: E402
from shareddisk.errors import ShareddiskError  # noqa: E402

UNFENCED = "/run/lab/unfenced"


def log(text: str) -> None:
    print(f"{time.monotonic():10.3f} writer[{os.getpid()}]: {text}", flush=True)


def open_gate(resource: str, definition: dict, end: float):
    """The gate over this node's view of the area disks (gate.py), or None without fencing."""
    if os.path.exists(UNFENCED):
        log("no gate: the lab runs without fencing")
        return None
    paths = os.environ["SHAREDDISK_ATTR_LAB_AREAS"].split(",")
    ours = (int(definition["owner"]["node"]), int(definition["owner"]["incarnation"]),
            int(definition["lease_generation"]))
    while True:
        try:
            areas = [Area.open(open_device(p, writable=False)) for p in paths]
            held = [i for i in range(areas[0].superblock["resource_count"])
                    if lease_holder(areas, i) == ours]
            break
        except ShareddiskError as exc:
            if time.monotonic() > end:
                log(f"cannot open the area disks: {exc}: giving up")
                return None
            time.sleep(0.2)
    if len(held) != 1:  # not ours (any more), or two of ours at one generation
        from shareddisk.attributes import find  # many modules: slow to import under TCG
        held = [find(areas[0], resource).index]
    return OwnerGate(areas, held[0], *ours)


def main() -> int:
    resource = os.environ["SHAREDDISK_RESOURCE"]
    node = int(os.environ["LAB_NODE"])
    device = os.environ["SHAREDDISK_ATTR_LAB_DATA"]
    every = float(os.environ.get("LAB_WRITE_INTERVAL", "0.2"))
    definition = os.path.join(os.environ.get("LAB_STATE_DIR", "/run/lab/state"), "groups",
                              f"{resource}.json")
    end = time.monotonic() + 120
    while True:
        try:
            with open(definition) as f:
                d = json.load(f)
            break
        except (OSError, ValueError):
            if time.monotonic() > end:
                log(f"no definition at {definition}: giving up")
                return 1
            time.sleep(0.05)
    generation = int(d["lease_generation"])
    if int(d["owner"]["node"]) != node:
        log(f"definition names node {d['owner']['node']}, not this node {node}: not writing")
        return 1
    gate = open_gate(resource, d, end)
    if gate is None and not os.path.exists(UNFENCED):
        return 1
    fd = os.open(device, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
    base = region_offset(node)
    buf = mmap.mmap(-1, REGION_BLOCKS * BLOCK)
    os.preadv(fd, [buf], base)
    block = next((i for i in range(REGION_BLOCKS)
                  if not buf[i * BLOCK:(i + 1) * BLOCK].strip(b"\0")), None)
    if block is None:
        log("region full")
        return 1
    one = mmap.mmap(-1, BLOCK)
    log(f"resource {resource} generation {generation}: writing from block {block}")
    seq = 0
    unsure = None
    while block < REGION_BLOCKS:
        if gate is not None:
            try:
                gate.check()
            except Lost as exc:
                log(f"not the owner any more: {exc}: stopping")
                return 0
            except Unsure as exc:
                if str(exc) != unsure:
                    log(f"not writing: {exc}")
                unsure = str(exc)
                time.sleep(every)
                continue
            unsure = None
        seq += 1
        one[:] = Stamp(generation, node, seq, time.monotonic()).pack()
        os.pwritev(fd, [one], base + block * BLOCK)
        block += 1
        time.sleep(every)
    log("region full")
    return 1


if __name__ == "__main__":
    sys.exit(main())
