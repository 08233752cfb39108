"""Runs inside each lab guest (started by the initramfs init, standard
library only): starts ``shareddisk run`` and answers the host's requests
on the virtio-serial port named ``lab``.

One JSON object per line each way.  Requests::

    {"op": "ping"}                          -> {"ok": true, "boot_id": ..., "uptime": s,
                                                "time": the guest's wall clock}
    {"op": "exec", "argv": [...], "timeout": s}
                                            -> {"ok": true, "rc": n, "out": ..., "err": ...}
    {"op": "daemon"}                        -> {"ok": true, "pid": n or null, "rc": exit code or null}
    {"op": "kill", "pid": n, "sig": n}      -> {"ok": true}

The lab's configuration is ``$LAB_DIR/config.json`` (read-only here: the
host's ``/`` is mounted read-only); this guest's writable directory is
``$LAB_DIR/g<N>`` (daemon.log, agent.log, workload.log).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LAB_DIR = Path(os.environ["LAB_DIR"])
NODE = int(os.environ["LAB_NODE"])
MINE = LAB_DIR / f"g{NODE}"
RUN = Path("/run/lab")
daemon: subprocess.Popen | None = None


def say(text: str) -> None:
    print(f"{time.monotonic():10.3f} agent: {text}", flush=True)


def start_daemon(config: dict) -> None:
    global daemon
    areas = [str(RUN / "dev" / f"area{i}") for i in range(config["disks"])]
    argv = [config["shareddisk"], "run", *areas, "--node-id", str(NODE),
            "--state-dir", str(RUN / "state"), "--fence", config["fence"], "-v"]
    if config.get("watchdog"):  # a device, or "none" (the lab without fencing)
        argv += ["--watchdog", config["watchdog"]]
    if config.get("unfenced"):
        (RUN / "unfenced").write_text("the workload's offline leaves its writer running\n")
    log = open(MINE / "daemon.log", "ab", buffering=0)
    log.write(f"--- boot, uptime {time.monotonic():.1f} s: {' '.join(argv)}\n".encode())
    env = dict(os.environ, LAB_WORKLOAD_LOG=str(MINE / "workload.log"))
    daemon = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                              cwd="/run/lab")
    say(f"daemon started, pid {daemon.pid}")


def port() -> str:
    for d in Path("/sys/class/virtio-ports").iterdir():
        if (d / "name").read_text().strip() == "lab":
            return f"/dev/{d.name}"
    raise SystemExit("no virtio-serial port named lab")


def handle(req: dict) -> dict:
    op = req.get("op")
    if op == "ping":
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return {"ok": True, "boot_id": boot_id, "uptime": time.monotonic(), "node": NODE,
                "time": time.time()}
    if op == "exec":
        try:
            p = subprocess.run(req["argv"], capture_output=True, text=True,
                               timeout=req.get("timeout", 60), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": "timed out"}
        except OSError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "rc": p.returncode, "out": p.stdout, "err": p.stderr}
    if op == "daemon":
        if daemon is None:
            return {"ok": True, "pid": None, "rc": None}
        return {"ok": True, "pid": daemon.pid, "rc": daemon.poll()}
    if op == "kill":
        os.kill(int(req["pid"]), int(req["sig"]))
        return {"ok": True}
    return {"ok": False, "error": f"unknown op {op!r}"}


def serve(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:  # the host is not connected: wait for it
            time.sleep(0.2)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                reply = handle(json.loads(line))
            except Exception as exc:  # the agent must survive a bad request
                reply = {"ok": False, "error": repr(exc)}
            data = json.dumps(reply).encode() + b"\n"
            while data:
                data = data[os.write(fd, data):]


def main() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    config = json.loads((LAB_DIR / "config.json").read_text())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    start_daemon(config)
    serve(port())


if __name__ == "__main__":
    sys.exit(main())
