"""The lab workload's writer: runs on the owner of the storage group (started
by ``workload online``) and appends a stamped block to the data image every
``LAB_WRITE_INTERVAL`` seconds (0.2) until it is killed.

It learns the lease generation from the storage group definition that the
storage agent writes once online (``<state dir>/groups/<resource>.json``),
and writes with O_DIRECT | O_DSYNC so that each block reaches the shared
image at once.  It imports little (no pathlib, ``python3 -S``): Python
starts slowly in an emulated guest reading the host's files over 9p, and
that start is part of every failover the lab measures.  It never checks whether it is still the owner: like a real
application, it relies on the node's fencing to stop it.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stamps import BLOCK, REGION_BLOCKS, Stamp, region_offset  # noqa: E402


def log(text: str) -> None:
    print(f"{time.monotonic():10.3f} writer[{os.getpid()}]: {text}", flush=True)


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
    while block < REGION_BLOCKS:
        seq += 1
        one[:] = Stamp(generation, node, seq, time.monotonic()).pack()
        os.pwritev(fd, [one], base + block * BLOCK)
        block += 1
        time.sleep(every)
    log("region full")
    return 1


if __name__ == "__main__":
    sys.exit(main())
