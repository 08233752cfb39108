"""The lab's scenarios: each breaks something real in one or more guests while
the storage group's owner writes stamped blocks, prints what happened with
times, judges the data image (lab_support/stamps.py), and brings the lab back
to all members up.

Each returns a dict: ``outcome`` (pass / fail / skip), ``reason``,
``figures`` (seconds) and ``events`` (time, text), and prints as it goes.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Callable

from lab_support.guests import LabError
from lab_support.lab import RESOURCE, DataWatch, Lab

DEAD_WAIT = 180.0  # seconds allowed for a takeover under TCG on a loaded machine (the
# successor may still be booting, and its writer imports shareddisk before it writes)
SETTLE = 5.0  # watch this long after a takeover for late writes of the old owner


class Result:
    def __init__(self, lab: Lab, name: str):
        self.lab = lab
        self.name = name
        self.start = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self.figures: dict[str, float] = {}
        self.outcome = "pass"
        self.reasons: list[str] = []
        self.heal = "wait"  # "boot": boot what broke, do not wait; "none": leave it broken
        self.verdict = None

    def event(self, text: str, at: float | None = None) -> float:
        at = time.monotonic() if at is None else at
        self.events.append((round(at - self.start, 3), text))
        self.lab.say(f"  +{at - self.start:7.2f}s  {text}")
        return at

    def figure(self, name: str, seconds: float) -> None:
        self.figures[name] = round(seconds, 2)
        self.lab.say(f"  figure   {name} = {seconds:.2f} s")

    def fail(self, why: str) -> None:
        self.outcome = "fail"
        self.reasons.append(why)
        self.lab.say(f"  FAIL     {why}")

    def judge(self, watch: DataWatch) -> None:
        verdict = self.verdict = watch.checker.verdict()
        for line in verdict.lines():
            self.fail(line)
        if verdict.ok:
            self.event(f"no-stale-write check: ok ({len(watch.checker.seen)} blocks)")

    def as_dict(self) -> dict:
        return {"scenario": self.name, "outcome": self.outcome, "reason": "; ".join(self.reasons),
                "figures": self.figures, "events": self.events}


def current_owner(lab: Lab, watch: DataWatch, r: Result) -> tuple[int, int]:
    last = watch.wait_new(60)
    if last is None:
        raise LabError("the storage group's owner is not writing (see .lab/g*/workload.log)")
    r.event(f"owner is node {last.stamp.node}, writing generation {last.stamp.generation}")
    return last.stamp.node, last.stamp.generation


def wait_takeover(lab: Lab, watch: DataWatch, r: Result, generation: int, since: float,
                  what: str) -> int | None:
    first = watch.wait_generation_above(generation, DEAD_WAIT)
    if first is None:
        r.fail(f"no node wrote a newer generation within {DEAD_WAIT:g} s")
        return None
    r.event(f"node {first.stamp.node} writes generation {first.stamp.generation} "
            "(online elsewhere)", first.at)
    r.figure(what, first.at - since)
    for event, label in (("takeover-lease", "lease taken"), ("online", "online")):
        at = daemon_event_time(lab, first.stamp.node, event, first.stamp.generation)
        if at is not None:
            r.event(f"node {first.stamp.node}: {label} (its daemon.log, guest clock)", at)
            r.figure(f"{what}: {label}", at - since)
    return first.stamp.node


def daemon_event_time(lab: Lab, node: int, event: str, generation: int) -> float | None:
    """When node's daemon logged ``event=EVENT ... generation=G`` for the lab's
    resource, on the host's monotonic clock (the guest's wall clock is read
    through the agent to find its offset), or None."""
    pattern = re.compile(rf"^ts=(\S+(?: \d\S+)?) .*event={event} .*resource={RESOURCE}\b.*"
                         rf"generation={generation}\b")
    try:
        lines = (lab.guest(node).dir / "daemon.log").read_text(errors="replace").splitlines()
        before = time.time()
        guest_now = lab.agent(node).request(op="ping", timeout=30).get("time")
        host_now = (before + time.time()) / 2
    except (OSError, LabError):
        return None
    if guest_now is None:
        return None
    for line in reversed(lines):
        m = pattern.match(line)
        if m:
            logged = log_time(m.group(1))
            return logged - (guest_now - host_now) - (time.time() - time.monotonic())
    return None


def log_time(ts: str) -> float:
    """A daemon.log timestamp (ISO 8601 with its offset, or the older
    ``YYYY-MM-DD HH:MM:SS,mmm`` in the guest's local time) as a Unix time."""
    try:
        return dt.datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return dt.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def guest_events(lab: Lab, node: int, since: float, names=("RESET", "WATCHDOG", "SHUTDOWN",
                                                           "STOP", "RESUME")) -> list:
    try:
        q = lab.qmp(node)
    except OSError:
        return []
    return [(t, ev) for t, ev in q.events if t >= since and ev["event"] in names]


def writer_lines(path: Path, offset: int, text: str) -> list[str]:
    """The lines of a guest's workload.log past ``offset`` that contain ``text``
    (what its writer said: the guest's own log, through 9p)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            tail = f.read().decode(errors="replace")
    except OSError:
        return []
    return [ln.split(": ", 1)[-1].strip() for ln in tail.splitlines() if text in ln]


def heal(lab: Lab, r: Result, reboot: list[int]) -> None:
    """Boot the given guests again and (unless told not to wait) wait until every
    guest is a member."""
    if r.heal == "none":
        return
    for node in reboot:
        lab.boot(node)
    if r.heal == "wait":
        lab.wait_members(lab.nodes, 300)
        r.event("lab healed: every guest is a member")


# -- the scenarios ---------------------------------------------------------------------------


def power_loss(lab: Lab, r: Result) -> None:
    """Power loss of the owner (QMP quit): time until the resource is online elsewhere."""
    with DataWatch(lab.data, lab.nodes) as watch:
        owner, gen = current_owner(lab, watch, r)
        q = lab.qmp(owner)
        t0 = r.event(f"power loss of node {owner} (QMP quit)")
        q.execute("quit")
        lab._forget(owner)
        wait_takeover(lab, watch, r, gen, t0, "power-loss failover")
        time.sleep(SETTLE)
        r.judge(watch)
    heal(lab, r, [owner])


def disk_loss(lab: Lab, r: Result) -> None:
    """The owner loses its disk (QMP drive_del: I/O errors from then on) and fences."""
    with DataWatch(lab.data, lab.nodes) as watch:
        owner, gen = current_owner(lab, watch, r)
        q = lab.qmp(owner)
        t0 = r.event(f"node {owner} loses its disk{'s' if len(lab.disks) > 1 else ''} "
                     "(drive_del)")
        for i in range(len(lab.disks)):
            q.hmp(f"drive_del area{i}")
        new = wait_takeover(lab, watch, r, gen, t0, "disk-loss failover")
        reset = q.wait_event("RESET", 5, since=t0)
        if reset:
            r.event(f"node {owner} reset itself (fence by sysrq)", reset[0])
            r.figure("disk-loss until fenced", reset[0] - t0)
        else:
            status = lab.agent(owner).request(op="daemon", timeout=30)
            r.event(f"node {owner}: no reset; its daemon: pid {status['pid']}, "
                    f"exit code {status['rc']}")
        time.sleep(SETTLE)
        r.judge(watch)
        if new is not None and reset and reset[0] > watch.checker.first_writes()[
                max(watch.checker.first_writes())].at:
            r.event("note: the owner reset after its successor's first write")
    heal(lab, r, [owner])


def pause(lab: Lab, r: Result) -> None:
    """The owner paused past the dead timeout (QMP stop), then continued: it must not write."""
    with DataWatch(lab.data, lab.nodes) as watch:
        owner, gen = current_owner(lab, watch, r)
        q = lab.qmp(owner)
        t0 = r.event(f"node {owner} paused (QMP stop)")
        q.execute("stop")
        new = wait_takeover(lab, watch, r, gen, t0, "pause failover")
        time.sleep(2.0)
        read_before = watch.reads
        wlog = lab.guest(owner).dir / "workload.log"
        wlog_before = wlog.stat().st_size if wlog.exists() else 0
        t1 = r.event(f"node {owner} continued (QMP cont)")
        q.execute("cont")
        reset = q.wait_event("RESET", 30, since=t1)
        if reset:
            r.event(f"node {owner} reset itself", reset[0])
            r.figure("pause: continue until reset", reset[0] - t1)
        late = [s for s in watch.blocks_since(read_before + 2) if s.stamp.node == owner]
        if late:
            r.fail(f"node {owner} wrote {len(late)} block(s) of generation "
                   f"{late[0].stamp.generation} after it continued, the first "
                   f"{min(s.at for s in late) - t1:.2f} s after `cont`")
        else:
            r.event(f"node {owner} wrote nothing after it continued")
        time.sleep(SETTLE)
        for line in writer_lines(wlog, wlog_before, "not the owner any more"):
            r.event(f"node {owner}'s writer: {line}")
        r.judge(watch)
    # Always a fresh QEMU for the paused guest: once, its sysrq reset right after
    # `cont` left it in the kernel's decompressor, copying ~150 bytes a minute
    # under TCG (docs/LAB.md); the reset is measured above either way.
    heal(lab, r, [owner])


def one_disk_lost(lab: Lab, r: Result) -> None:
    """One of three disks lost for every guest: nothing fences, nothing moves."""
    if len(lab.disks) < 3:
        return skip(r, "needs three disks (tools/lab up 3 --disks 3)")
    lost = len(lab.disks) - 1
    watch_for = 25.0
    with DataWatch(lab.data, lab.nodes) as watch:
        owner, gen = current_owner(lab, watch, r)
        t0 = r.event(f"every guest loses disk area{lost} (drive_del)")
        for node in lab.nodes:
            lab.qmp(node).hmp(f"drive_del area{lost}")
        time.sleep(watch_for)
        for node in lab.nodes:
            for t, ev in guest_events(lab, node, t0):
                r.fail(f"node {node}: {ev['event']} at +{t - r.start:.2f}s")
        newer = [g for g in watch.checker.first_writes() if g > gen]
        if newer:
            r.fail(f"the resource moved (generation {max(newer)}) though a majority of disks "
                   "was there")
        recent = watch.blocks_since(watch.reads - 40, gen)
        if not recent:
            r.fail(f"node {owner} stopped writing")
        status = lab.host_status()
        alive = lab.alive_members(status)
        r.event(f"after {watch_for:g} s: members alive {sorted(alive)}, owner still node "
                f"{owner}, {len(recent)} blocks in the last ~2 s")
        if set(lab.nodes) - alive:
            r.fail(f"nodes {sorted(set(lab.nodes) - alive)} are no longer alive")
        r.judge(watch)
    heal(lab, r, lab.nodes)


def hung_daemon(lab: Lab, r: Result) -> None:
    """The owner's daemon hung (SIGSTOP in the guest): the watchdog resets the guest."""
    if not lab.watched:
        return skip(r, "the daemons do not run with the guests' /dev/watchdog "
                       "(no `run --watchdog` in this checkout, or a lab up --no-fencing)")
    with DataWatch(lab.data, lab.nodes) as watch:
        owner, gen = current_owner(lab, watch, r)
        granted = watchdog_timeout(lab, owner)
        r.event(f"node {owner}: its daemon armed /dev/watchdog with {granted} s (daemon.log)")
        q = lab.qmp(owner)
        pid = lab.agent(owner).request(op="daemon")["pid"]
        t0 = r.event(f"node {owner}: daemon (pid {pid}) stopped with SIGSTOP")
        lab.agent(owner).request(op="kill", pid=pid, sig=19)
        dog = q.wait_event("WATCHDOG", DEAD_WAIT, since=t0)
        if dog:
            r.event(f"node {owner}: watchdog fired ({dog[1]['data'].get('action')})", dog[0])
            r.figure("hung daemon until watchdog reset", dog[0] - t0)
        else:
            r.fail(f"node {owner}: no watchdog reset within {DEAD_WAIT:g} s")
        lab._forget(owner)
        wait_takeover(lab, watch, r, gen, t0, "hung-daemon failover")
        first = watch.wait_generation_above(gen, 1)
        if dog and first:
            r.figure("hung-daemon: watchdog reset until the successor's first write",
                     first.at - dog[0])
            if first.at < dog[0]:
                r.fail("the successor wrote before the hung owner was reset")
        time.sleep(SETTLE)
        r.judge(watch)
    heal(lab, r, [] if dog else [owner])


def watchdog_timeout(lab: Lab, node: int) -> int | None:
    """The timeout node's daemon was granted, from its ``event=watchdog-armed`` line."""
    try:
        text = (lab.guest(node).dir / "daemon.log").read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"event=watchdog-armed .*timeout=(\d+)", text)
    return int(found[-1]) if found else None


def message_reset(lab: Lab, r: Result) -> None:
    """A guest told to reset through its mailbox (message ... reset) resets itself."""
    with DataWatch(lab.data, lab.nodes) as watch:
        owner, gen = current_owner(lab, watch, r)
        sender = next(n for n in lab.nodes if n != owner)
        q = lab.qmp(owner)
        t0 = r.event(f"node {sender} runs: shareddisk message ... {owner} reset")
        out = lab.guest_exec(sender, [lab.state["config"]["shareddisk"], "message",
                                      *lab.guest_areas(), str(owner), "reset"], timeout=180)
        sent = r.event(f"message written (the command exited {out['rc']}) "
                       f"{out['err'].strip()[-200:]}")
        if out["rc"] != 0:
            r.fail(f"shareddisk message exited {out['rc']}")
        reset = q.wait_event("RESET", DEAD_WAIT, since=t0)
        if reset:
            r.event(f"node {owner} reset", reset[0])
            r.figure("message written until reset (at most)", reset[0] - sent)
        else:
            r.fail(f"node {owner} was not reset within {DEAD_WAIT:g} s")
        lab._forget(owner)
        wait_takeover(lab, watch, r, gen, sent, "message-reset failover (from the write)")
        time.sleep(SETTLE)
        r.judge(watch)
    heal(lab, r, [] if reset else [owner])


def skip(r: Result, why: str) -> None:
    r.outcome = "skip"
    r.reasons.append(why)
    r.lab.say(f"  SKIP     {why}")


SCENARIOS: dict[str, Callable[[Lab, Result], None]] = {
    "power-loss": power_loss,
    "disk-loss": disk_loss,
    "pause": pause,
    "one-disk-lost": one_disk_lost,
    "hung-daemon": hung_daemon,
    "message-reset": message_reset,
}


def run(lab: Lab, name: str, *, heal: str = "wait") -> dict:
    """Run scenario ``name``.  ``heal="boot"`` boots what the scenario broke
    without waiting for it to rejoin (the tests overlap that with the next one)."""
    if not lab.nodes or not any(lab.guest(n).alive() for n in lab.nodes):
        raise LabError("no lab is up (tools/lab up 3)")
    r = Result(lab, name)
    r.heal = heal
    lab.say(f"scenario {name}: {SCENARIOS[name].__doc__.strip().splitlines()[0]}")
    try:
        SCENARIOS[name](lab, r)
    finally:
        lab.close()
    lab.say(f"scenario {name}: {r.outcome.upper()}" + (f" ({'; '.join(r.reasons)})"
                                                       if r.reasons else ""))
    out = r.as_dict()
    out["stale_writes"] = len(r.verdict.stale) if r.verdict else None
    return out
