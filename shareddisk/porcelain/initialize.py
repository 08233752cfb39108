"""The ``init`` command: one cluster's areas on one or more devices.

Every device is checked before anything is written to any of them (a known
signature, live nodes on an area being replaced, a device named twice, a
size too small); images this command created are removed again when it
fails.  All the areas get one cluster uuid, and one sector size: the one
asked for, else the widest logical sector size of the devices.
"""

from __future__ import annotations

import contextlib
import os
import uuid as uuidlib
from typing import Any, Callable, ContextManager, Sequence

from shareddisk.area import DEFAULT_LOG_SIZE, DEFAULT_RESOURCES, Geometry, check_name, \
    compute_layout
from shareddisk.clock import SystemClock
from shareddisk.create import check_device, create_area, refuse_live
from shareddisk.device import open_device
from shareddisk.diskorder import check_distinct_paths
from shareddisk.errors import DeviceTooSmall, DiskIdentityError, UsageError
from shareddisk.format.superblock import CLUSTER_NAME_BYTES

BarFactory = Callable[..., ContextManager[Any]]
"""progress.terminal_bar, or a stand-in: ``factory(description, unit=...)``."""


def init(devices: Sequence[str], *, nodes: int, resources: int = DEFAULT_RESOURCES,
         log_disks: Sequence[str] = ("log0",), log_size: int = DEFAULT_LOG_SIZE,
         sector_size: int | None = None, interval: float = 1.0,
         cluster_name: str = "cluster", size: int | None = None, force: bool = False,
         ignore_live_nodes: bool = False, bar: BarFactory | None = None) -> dict[str, Any]:
    """Create the areas; what was made, as JSON (cluster uuid, area and sector size,
    the backup superblock's offset on each device).

    ``size`` creates missing file images of that many bytes; ``force``
    overwrites data, but (unless ``ignore_live_nodes``) not an area on which
    nodes still heartbeat.  ``bar`` draws each device's progress.
    """
    devices = list(devices)
    names = tuple(log_disks)
    geometry = Geometry(sector_size=sector_size or 512, node_count=nodes,
                        resource_count=resources, log_disks=names, log_size=log_size,
                        interval_ms=round(interval * 1000))
    needed = compute_layout(geometry).area_size  # validates before anything is created
    check_name(cluster_name, "cluster name", CLUSTER_NAME_BYTES)
    if size is not None and size < needed:
        raise DeviceTooSmall(f"{', '.join(devices)}: --size {size} is too small, the area "
                             f"needs {needed} bytes", needed=needed, available=size)
    twice = next((d for i, d in enumerate(devices) if d in devices[:i]), None)
    if twice is not None:
        raise DiskIdentityError(f"{twice}: named twice; a disk counts once toward the majority")
    check_distinct_paths(devices)  # the same storage under two names (symlink, ./, loop + file)
    missing = [d for d in devices if not os.path.exists(d)]
    with contextlib.ExitStack() as stack:
        opened = []
        try:
            for path in devices:
                dev = stack.enter_context(open_device(path, create_size=size, exclusive=True))
                if size is not None and dev.size < size:
                    raise UsageError(f"{path}: exists with {dev.size} bytes; --size {size} only "
                                     f"creates a missing image")
                opened.append(dev)
            if sector_size is None:
                widest = max(dev.sector_size for dev in opened)
                geometry = geometry._replace(sector_size=max(512, widest))
            for dev in opened:
                check_device(dev, geometry, force=force, ignore_live=True)
            if force and not ignore_live_nodes:  # all devices watched at once
                refuse_live(opened, SystemClock())
            cluster_uuid = uuidlib.uuid4()
            results = []
            for index, dev in enumerate(opened):
                with _maybe(bar, f"init {dev.path}") as drawn:
                    results.append(create_area(dev, geometry, cluster_name=cluster_name,
                                               force=True, cluster_uuid=cluster_uuid,
                                               progress=drawn, ignore_live=True,
                                               disk_index=index, disk_count=len(opened)))
        except BaseException:
            for path in missing:  # we created them: leave nothing behind on failure
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
    layout = results[0].layout
    return {"devices": devices, "cluster_uuid": str(cluster_uuid),
            "area_size": layout.area_size, "sector_size": layout.sector_size, "nodes": nodes,
            "resources": resources, "log_disks": list(names),
            "backup_superblock_offsets": [r.backup_offset for r in results]}


def _maybe(bar: BarFactory | None, description: str) -> ContextManager[Any]:
    return bar(description, unit="bytes") if bar is not None else contextlib.nullcontext()
