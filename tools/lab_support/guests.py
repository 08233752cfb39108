"""Starting and stopping the lab's QEMU guests, and talking to them.

Each guest: TCG (KVM here only runs PVM kernels), one vCPU, the host's
kernel with the lab's initramfs, the host's ``/`` read-only over 9p, its own
writable 9p directory, every shared disk image as a ``virtio-blk-pci``
device with ``cache=none`` and ``share-rw=on`` (so several guests write the
same image with O_DIRECT), an ``i6300esb`` watchdog that resets the guest,
a QMP socket and a virtio-serial port for the guest agent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"
MEMORY = "448M"
PACKAGES = "qemu-system-x86 linux-image-amd64 busybox-static"


class LabError(Exception):
    pass


def find_kernel() -> Path | None:
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    for k in reversed(kernels):
        if (Path("/lib/modules") / k.name.removeprefix("vmlinuz-")).is_dir() and os.access(k, os.R_OK):
            return k
    return None


def missing() -> str | None:
    """Why the lab cannot run here, or None."""
    what = []
    if not shutil.which(QEMU):
        what.append(QEMU)
    if find_kernel() is None:
        what.append("a kernel in /boot with its modules")
    if not Path("/bin/busybox").exists():
        what.append("/bin/busybox")
    if what:
        return (f"missing {', '.join(what)}; as root: apt-get install -y {PACKAGES}")
    return None


@dataclass
class Guest:
    node: int
    dir: Path
    pid: int | None = None

    @property
    def qmp_path(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def agent_path(self) -> Path:
        return self.dir / "agent.sock"

    def alive(self) -> bool:
        if not self.pid:
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.dir).encode() in cmdline  # not a recycled pid


def qemu_argv(guest: Guest, lab_dir: Path, kernel: Path, initrd: Path, disks: list[Path],
              data: Path, agent_script: Path) -> list[str]:
    append = (f"console=ttyS0 quiet panic=-1 lab.dir={lab_dir} lab.node={guest.node} "
              f"lab.agent={agent_script}")
    argv = [QEMU, "-name", f"lab-g{guest.node}", "-machine", "pc", "-accel", "tcg",
            "-smp", "1", "-m", MEMORY, "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
            "-serial", f"file:{guest.dir / 'console.log'}",
            "-qmp", f"unix:{guest.qmp_path},server=on,wait=off",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={guest.agent_path},server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=lab",
            "-fsdev", "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=labdir,path={guest.dir},security_model=none",
            "-device", "virtio-9p-pci,fsdev=labdir,mount_tag=labdir",
            "-device", "i6300esb", "-action", "watchdog=reset"]
    for name, path in [(f"area{i}", p) for i, p in enumerate(disks)] + [("data", data)]:
        argv += ["-drive", f"if=none,id={name},file={path},format=raw,cache=none,aio=threads,"
                           "werror=report,rerror=report",
                 "-device", f"virtio-blk-pci,drive={name},share-rw=on,serial={name}"]
    return argv


def launch(guest: Guest, argv: list[str]) -> None:
    guest.dir.mkdir(parents=True, exist_ok=True)
    for sock in (guest.qmp_path, guest.agent_path):
        sock.unlink(missing_ok=True)
    with open(guest.dir / "qemu.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    guest.pid = proc.pid


def stop(guest: Guest, wait: float = 5.0) -> None:
    """End the guest's QEMU by its pid (SIGTERM, then SIGKILL)."""
    if not guest.alive():
        return
    os.kill(guest.pid, signal.SIGTERM)
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            if os.waitpid(guest.pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            if not guest.alive():
                return
        time.sleep(0.1)
    if guest.alive():
        os.kill(guest.pid, signal.SIGKILL)


class Agent:
    """The host's end of a guest agent's virtio-serial port."""

    def __init__(self, guest: Guest):
        self.guest = guest
        self.sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(self.guest.agent_path))
            self.sock = s
        return self.sock

    def request(self, timeout: float = 60.0, **req) -> dict:
        s = self._connect()
        s.settimeout(timeout)
        try:
            s.sendall(json.dumps(req).encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise LabError(f"guest {self.guest.node}: agent connection closed")
                self._buf += chunk
        except OSError as exc:
            self.close()
            raise LabError(f"guest {self.guest.node}: agent: {exc}") from None
        line, self._buf = self._buf.split(b"\n", 1)
        reply = json.loads(line)
        if not reply.get("ok"):
            raise LabError(f"guest {self.guest.node}: {req.get('op')}: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self._buf = b""
