"""The clients: the CLI's commands on a host (attribute updates, operation requests,
moves, mailbox messages), made through the owner's daemon or as a separate process.

A part of shareddisk/sim/runner.py's Simulation.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from shareddisk.porcelain import resources as config_mod
from shareddisk import session as session_mod
from shareddisk.area import Area
from shareddisk.drivers.image import read_contents
from shareddisk.errors import FormatError, LockHeld, ShareddiskError
from shareddisk.messages import send_message
from shareddisk.oprequest import OpRequest
from shareddisk.replicas import members_of, open_by_majority, replicated_area
from shareddisk.sim.config import CLIENT_KEYS, MIB, VOLUME_NAMES
from shareddisk.sim.hosts import Host
from shareddisk.sim.invariants import Attempt
from shareddisk.sim.scheduler import SimCrash, Task


class Clients:
    """Commands run on the hosts, the way the configuration says."""

    def client(self, host: Host, what: str, body: Callable[[Area], Any],
               on_done: Callable[[Any], None] = lambda r: None,
               on_error: Callable[[BaseException], None] = lambda e: None) -> Task:
        box: dict[str, Any] = {}

        def main() -> None:
            self.trace(f"h{host.id} cli {what}: starts")
            # the command names every disk: records, leases and logs are on all of them
            area = replicated_area(open_by_majority(host.disks))
            box["result"] = body(area)

        def ended(task: Task) -> None:
            err = task.error
            if err is None:
                self.trace(f"h{host.id} cli {what}: ok")
                on_done(box.get("result"))
            else:
                if not isinstance(err, (ShareddiskError, SimCrash)):
                    self.unexpected(task, err)
                self.trace(f"h{host.id} cli {what}: {type(err).__name__}: {str(err)[:160]}")
                on_error(err)

        number = next(self.requests)
        holder: dict[str, Any] = {"identity": None}
        task = self.sched.spawn(f"h{host.id}.cli{number}", main, host=host, role="client",
                                identity=lambda: holder["identity"]() if holder["identity"]
                                else None)
        task.client_identity = holder  # type: ignore[attr-defined]
        task.on_exit.append(ended)
        self.stats["cli_commands"] += 1
        return task

    def update(self, host: Host, index: int, changes: dict[str, Any],
               attempt: Attempt | None = None) -> Task | None:
        """``shareddisk attr set`` on ``host`` (the way ``cfg.cli`` says)."""
        if self.cfg.cli == "session":
            return self._update_session(host, index, changes, attempt)
        return self._update_daemon(host, index, changes, attempt)

    def _update_daemon(self, host: Host, index: int, changes: dict[str, Any],
                       attempt: Attempt | None) -> Task | None:
        """The request handed to the host's daemon, which writes it as the owner.

        A thread of the daemon process (so it dies with it), writing through
        the WriteContext of the resource it owns, under the same-host lock.
        """
        what = f"update r{index} {json.dumps(changes, sort_keys=True)[:80]}"
        life = host.life
        self.stats["cli_commands"] += 1
        if life is None or not life.running():
            self.trace(f"h{host.id} request {what}: refused, no daemon running")
            if attempt is not None:
                self.ledger.failed(attempt, "no daemon")
            return None
        versions: list[int] = []

        def main() -> None:
            self.trace(f"h{host.id} request {what}: starts")
            daemon = life.daemon
            assert daemon is not None
            owned = daemon.manager.owned.get(index)
            if owned is None:
                raise LockHeld(f"node {host.id} does not own resource {index}")
            self.sched.current.versions = versions  # type: ignore[union-attr]
            owned.ctx.write_ctx.update(**changes)

        def ended(task: Task) -> None:
            err = task.error
            if err is None:
                self.trace(f"h{host.id} request {what}: ok")
                if attempt is not None:
                    self.ledger.acked(attempt, versions[-1] if versions else None)
                return
            if not isinstance(err, (ShareddiskError, SimCrash)):
                self.unexpected(task, err)
            self.trace(f"h{host.id} request {what}: {type(err).__name__}: {str(err)[:160]}")
            if attempt is not None:
                self.ledger.failed(attempt, str(err))

        task = self.sched.spawn(f"h{host.id}.{life.number}/rpc{next(self.requests)}", main,
                                host=host, role="daemon", life=life, identity=life.identity)
        life.tasks.append(task)
        task.on_exit.append(ended)
        return task

    def _update_session(self, host: Host, index: int, changes: dict[str, Any],
                        attempt: Attempt | None) -> Task:
        """One CAS write through a Session, as ``shareddisk attr set --node-id`` does."""
        versions: list[int] = []

        def body(area: Area) -> Any:
            with session_mod.Session(area, host.id, self.clock, state_dir=host.state_dir,
                                     runtime=self.runtime) as session:
                me = self.sched.current
                holder = session.holder
                assert me is not None and holder is not None
                if me.client_identity["identity"] is None:  # type: ignore[attr-defined]
                    me.client_identity["identity"] = lambda: (holder.node_id, holder.incarnation)  # type: ignore[attr-defined]
                    how = "borrowing the daemon's"
                else:
                    how = "with its own"
                self.trace(f"h{host.id} cli acts as node {holder.node_id} {how} incarnation "
                           f"{holder.incarnation}")
                me.versions = versions  # type: ignore[union-attr]
                return config_mod.update_resource(session, f"r{index}", changes)

        what = f"update r{index} {json.dumps(changes, sort_keys=True)[:80]}"
        return self.client(host, what, body,
                           on_done=lambda r: attempt and self.ledger.acked(
                               attempt, versions[-1] if versions else None),
                           on_error=lambda e: attempt and self.ledger.failed(attempt, str(e)))

    def owner_host(self, index: int) -> Host | None:
        try:
            record = self.stored_record(index).record
        except FormatError:
            return None
        if record is None or record.owner_host is None:
            return None
        return self.hosts.get(record.owner_host.node_id)

    def pick_host(self, index: int) -> Host:
        owner = self.owner_host(index)
        if owner is not None and self.rng.random() < 0.75:
            return owner
        return self.hosts[self.rng.randint(1, self.cfg.nodes)]

    def attr_update(self, index: int | None = None, host: Host | None = None) -> Attempt:
        index = self.rng.randrange(self.cfg.resources) if index is None else index
        host = self.pick_host(index) if host is None else host
        key = self.rng.choice(CLIENT_KEYS)
        value = f"x{next(self.values)}"
        att = self.ledger.attempt(index, key, value, host.id)
        self.stats["updates"] += 1
        self.update(host, index, {key: value}, att)
        return att

    def op_request(self, index: int | None = None, host: Host | None = None,
                   kind: str | None = None, args: dict[str, Any] | None = None) -> str:
        rng = self.rng
        index = rng.randrange(self.cfg.resources) if index is None else index
        host = self.pick_host(index) if host is None else host
        if kind is None or args is None:
            kind, args = self._pick_op(index)
        request_id = f"q{next(self.requests)}"
        request = OpRequest(request_id, kind, args).to_json()
        self.stats["op_requests"] += 1
        self.update(host, index, {"op_request": request})
        return request_id

    def _pick_op(self, index: int) -> tuple[str, dict[str, Any]]:
        """Mostly operations that make sense for the volumes there now (1 in 10 does not)."""
        rng = self.rng
        try:
            existing = [v.name for v in read_contents(self.data[f"sim-data-r{index}"]).sorted()]
        except ShareddiskError:
            existing = []
        free = [n for n in VOLUME_NAMES if n not in existing]
        if rng.random() < 0.1:  # a request the driver refuses
            existing, free = free or list(VOLUME_NAMES), existing or list(VOLUME_NAMES)
        choices = (["create-volume"] * 2 if free else []) + \
            (["delete-volume", "resize-volume"] if existing else []) + \
            (["rename-volume"] if existing and free else [])
        kind = rng.choice(choices or ["create-volume"])
        if kind == "create-volume":
            return kind, {"name": rng.choice(free or list(VOLUME_NAMES)),
                          "size": rng.choice([1, 2]) * MIB}
        name = rng.choice(existing or list(VOLUME_NAMES))
        if kind == "delete-volume":
            return kind, {"name": name}
        if kind == "resize-volume":
            return kind, {"name": name, "size": rng.choice([1, 2, 3]) * MIB}
        return kind, {"name": name, "new_name": rng.choice(free or list(VOLUME_NAMES))}

    def message(self, target: int, sender: Host, kind: str = "reset") -> None:
        def body(area: Area) -> Any:
            return send_message(members_of(area), target, kind, clock=self.clock,
                                sender_id=sender.id)
        self.stats["messages"] += 1
        self.client(sender, f"message {target} {kind}", body)
