"""The guests' initramfs: busybox, a few kernel modules, and an init that
mounts the host's ``/`` read-only over 9p and chroots into it.

No disk image is built: the guest runs the host's own Python and this
checkout (with its ``.venv``) at the very same paths.  Writable paths are
tmpfs, except the guest's own directory under the lab directory, which is a
writable 9p share so that logs reach the host as they are written.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from pathlib import Path

MODULES = ("virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci "
           "netfs fscache 9pnet 9pnet_virtio 9p virtio_console virtio_blk watchdog i6300esb").split()
BUSYBOX = "/bin/busybox"

# Runs as PID 1 under busybox sh.  Parameters come from the kernel command
# line: lab.dir (the lab directory on the host), lab.node (this guest's node id),
# lab.agent (the guest agent's path).
INIT = r"""#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod /lib/modules/$m.ko 2>/dev/null; done
for arg in $(cat /proc/cmdline); do
    case "$arg" in lab.dir=*) LABDIR="${arg#lab.dir=}";; lab.node=*) NODE="${arg#lab.node=}";; lab.agent=*) AGENT="${arg#lab.agent=}";; esac
done
R=/newroot
mkdir -p $R
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot $R; then
    echo "lab: cannot mount the host's / over 9p"; exec sh
fi
for d in tmp run var/tmp var/lib; do mount -t tmpfs -o mode=1777 tmpfs $R/$d; done
mount -t devtmpfs dev $R/dev
mkdir -p /dev/pts; mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labdir "$R$LABDIR/g$NODE"
# Stable names for the disks, from the serial each was given by the host.
mkdir -p $R/run/lab/dev
for b in /sys/block/vd*; do
    s=$(cat $b/serial 2>/dev/null); [ -n "$s" ] && ln -sf /dev/${b##*/} $R/run/lab/dev/$s
done
echo "lab: node $NODE up, starting the agent"
while true; do
    chroot $R /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root \
        LAB_DIR="$LABDIR" LAB_NODE="$NODE" \
        python3 "$AGENT" >>"$R$LABDIR/g$NODE/agent.log" 2>&1
    echo "lab: agent exited ($?), restarting it"; sleep 1
done
"""


def kernel_release(kernel: Path) -> str:
    """The module directory matching a /boot/vmlinuz-RELEASE kernel."""
    return kernel.name.removeprefix("vmlinuz-")


def build(out: Path, kernel: Path) -> Path:
    """Write a gzip'd newc cpio archive at ``out`` (by hand: newc is simple,
    and no cpio tool is needed); returns it."""
    release = kernel_release(kernel)
    moddir = Path("/lib/modules") / release
    files: list[tuple[str, bytes, int]] = []
    dirs = ["bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"]
    files.append(("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755))
    files.append(("bin/sh", b"", -1))  # symlink, see below
    files.append(("init", INIT.encode(), 0o755))
    files.append(("modules.list", "\n".join(MODULES).encode() + b"\n", 0o644))
    for m in MODULES:
        found = sorted(moddir.rglob(f"{m}.ko")) + sorted(moddir.rglob(f"{m}.ko.xz"))
        if not found:
            raise FileNotFoundError(f"kernel module {m} not found under {moddir}")
        data = found[0].read_bytes()
        if found[0].suffix == ".xz":
            import lzma
            data = lzma.decompress(data)
        files.append((f"lib/modules/{m}.ko", data, 0o644))
    buf = io.BytesIO()
    ino = 1

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        header = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
        buf.write(header.encode() + name.encode() + b"\0")
        buf.write(b"\0" * (-buf.tell() % 4))
        buf.write(data)
        buf.write(b"\0" * (-buf.tell() % 4))
        ino += 1

    for d in dirs:
        entry(d, stat.S_IFDIR | 0o755, b"")
    for name, data, mode in files:
        if mode == -1:
            entry(name, stat.S_IFLNK | 0o777, b"busybox")
        else:
            entry(name, stat.S_IFREG | mode, data)
    entry("TRAILER!!!", 0, b"")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=1) as f:
        f.write(buf.getvalue())
    os.replace(tmp, out)
    return out
