"""Real daemons and an exec driver script: no write of a frozen owner's script after
its peers declared it dead (issue: "Stop scripts delay the fence, and exec scripts are
never fenced").

The owner's ``apply-step`` writes a line every 50 ms for several seconds; the
daemon is frozen (SIGSTOP) in the middle of it, for longer than the dead
timeout.  Its script runs in its own session, so the SIGSTOP does not stop it;
before the fix it wrote on after its peers had declared it dead (92 lines in one
run) and the successor had taken the resource over.
Now the reaper, told after each confirmed renewal how much of renew_fail
remains, kills the script's whole group when the frozen daemon stops telling
it, before any peer may call the owner dead.
"""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from daemons import PATIENCE, Cluster, cluster, wait_for  # noqa: F401

SCRIPT = r"""#!/bin/sh
OUT={out}
case "$1" in
  online|offline|monitor) exit 0 ;;
  prepare|describe) exit 3 ;;
  steps) echo slow ;;
  apply-step)
    echo "$$" > {out}.pgid.$PPID
    i=0
    while [ $i -lt 120 ]; do echo "$PPID $(date +%s.%N)" >> "$OUT"; i=$((i+1)); sleep 0.05; done
    ;;
  *) exit 3 ;;
esac
"""


def _lines(out: Path) -> list[tuple[int, float]]:
    if not out.exists():
        return []
    rows = []
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((int(parts[0]), float(parts[1])))
    return rows


def test_a_frozen_owner_s_script_writes_nothing_after_it_is_declared_dead(
        cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "writes.log"
    script = tmp_path / "agent.sh"
    script.write_text(SCRIPT.format(out=out))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    cluster.cli("resource", "add", str(cluster.image), "sg1", "--type", "storage-group",
                "--failover-nodes", "1,2", "--attr", "driver=exec",
                "--attr", f"exec_script={script}", "--attr", "exec_timeout:int=60",
                "--node-id", "1")
    n1 = cluster.start(1)
    n1.wait_event("online", PATIENCE, resource="sg1", node="1")
    n2 = cluster.start(2)
    n2.wait_event("joined", PATIENCE, node="2")
    cluster.spawn("op", str(cluster.image), "sg1", "create-volume", "v1", "--size", "1M")
    wait_for(lambda: any(pid == n1.pid for pid, _ in _lines(out)), PATIENCE,
             "the owner's apply-step to write", lambda: cluster.logs())
    n1.signal(signal.SIGSTOP)
    try:
        n2.wait_event("online", PATIENCE, resource="sg1", node="2")
        # From the verdict on, the successor may write (it takes the lease, replays
        # the step): nothing of the old owner may land after it.
        dead_at = next(t for t, f in n2.timeline() if f.get("event") == "peer"
                       and f.get("peer") == "1" and f.get("to") == "dead")
        pgid = int(Path(f"{out}.pgid.{n1.pid}").read_text())

        def group_running() -> bool:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return False
            return any(_state(p) != "Z" for p in _group(pgid))

        wait_for(lambda: not group_running(), PATIENCE,
                 "the frozen owner's script to be stopped", lambda: cluster.logs())
        late = [t for pid, t in _lines(out) if pid == n1.pid and t > dead_at]
        assert not late, (f"the frozen owner's script wrote {len(late)} lines after node 2 "
                          f"declared it dead\n{cluster.logs()}")
    finally:
        n1.signal(signal.SIGCONT)


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry))
    return pids


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
