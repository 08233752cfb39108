"""Write keys: the versions and log seqs that order copies of a record across disks.

With several disks a resource record is ordered by its ``version`` and a log
entry by its ``seq``: a reader takes the copy with the highest key among the
disks (shareddisk/replicas.py).  A write that fails on a majority of disks
may still have landed on a minority; it is *in doubt*, and the disk holding
it can come back later.  So an in-doubt key must never end up above a write
that was acknowledged after it.  Two rules ensure that:

* **A writer never uses a key twice.**  It remembers the highest key it tried
  per record, for its lease generation, and the next write goes above it even
  when a majority read now shows less (the in-doubt copy may sit on a disk it
  cannot read now).  Campaign findings 35 and 36 were this rule missing.
* **A new lease holder writes above everything its predecessors tried.**  The
  keys of lease generation g start above ``g << GENERATION_SHIFT``, so a key
  orders writes by (lease generation, count within it): an in-doubt write of
  an older holder is older than anything the new holder wrote, whatever disk
  it comes back on.  The lease generation is the fencing token, strictly
  increasing per resource (docs/PAXOS.md), and the resource's record and log
  lane are written only under its lease.

Generation 0 means "no lease" (tests and tools writing a fresh area): only
the first rule applies.

The marks belong to the lease holder, not to one process: a command on the
host of a running daemon borrows the daemon's incarnation, and so its lease
and generation (shareddisk/session.py).  So the runtime keeps them in one
small file per record in this host's run directory
(``/run/shareddisk/<cluster-uuid>/keys/``, a tmpfs: a reboot is a new
incarnation, whose generations need none of them), read and written under
the record's same-host lock that every writer of it takes; only the newest
generation's mark is kept.  A simulation keeps them in memory.
"""

from __future__ import annotations

import contextlib
import os
import threading

from shareddisk.errors import DeviceError

GENERATION_SHIFT = 32
"""Keys of lease generation g are above g << 32: 2**32 - 1 writes per lease tenure."""


def floor(generation: int) -> int:
    """The key every write of lease generation ``generation`` goes above."""
    return generation << GENERATION_SHIFT


def generation_of(key: int) -> int:
    """The lease generation whose holder wrote ``key`` (0 for keys written before the rule)."""
    return key >> GENERATION_SHIFT


Mark = tuple[int, int]
"""(lease generation, highest key tried)."""


class WriteKeys:
    """A lease holder's highest tried key per record, for its newest generation.

    Records are named by the writer ("resource-3", "log-log0-3").  Without a
    ``directory`` the marks live in this object; with one, in a file per
    record there, shared by every process of this host (module docstring).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        # A string: pathlib (with urllib.parse and ipaddress) is more than a
        # command's start-up should import for two file names (issue 17).
        self.directory = os.fspath(directory) if directory is not None else None
        self._marks: dict[str, Mark] = {}
        self._lock = threading.Lock()

    def last(self, record: str, generation: int) -> int | None:
        """The highest key tried on ``record`` under ``generation``."""
        mark = self._load(record)
        if mark is None or mark[0] != generation:
            return None
        return mark[1]

    def above(self, record: str, generation: int, stored: int) -> int:
        """The lowest key the next write of ``record`` may use, ``stored`` being the
        highest key a read shows now."""
        last = self.last(record, generation)
        return max(stored, last or 0, floor(generation)) + 1

    def attempt(self, record: str, generation: int, key: int) -> None:
        """Note a write of ``key`` before it is issued: from then on
        it may be on some disk, whatever the write's outcome.  A mark of a newer
        generation stays (this writer's lease is over; its write will be refused)."""
        mark = self._load(record)
        if mark is None or generation > mark[0] or (generation == mark[0] and key > mark[1]):
            self._store(record, (generation, key))

    def _load(self, record: str) -> Mark | None:
        if self.directory is None:
            with self._lock:
                return self._marks.get(record)
        path = os.path.join(self.directory, record)
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DeviceError(f"{path}: cannot read the write key tried last: {exc}") from None
        try:
            generation, key = (int(v) for v in text.split())
        except ValueError:
            raise DeviceError(f"{path}: not a write key mark ({text[:40]!r}); it is "
                              f"rewritten whole, so something else wrote it") from None
        return generation, key

    def _store(self, record: str, mark: Mark) -> None:
        if self.directory is None:
            with self._lock:
                self._marks[record] = mark
            return
        path = os.path.join(self.directory, record)
        # Not tempfile: a command would import it (and shutil, random, bz2...)
        # for one small file; the record's lock keeps other writers out.
        tmp = os.path.join(self.directory, f".{record}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(" ".join(map(str, mark)) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise DeviceError(f"{path}: cannot record the write key about to be used "
                              f"(nothing written to the disks): {exc.strerror or exc}; "
                              f"SHAREDDISK_RUN_DIR may name a directory this user can "
                              f"write (docs/OPERATIONS.md, Files on each host)") from None


def key_text(key: int) -> str:
    """A key as people read it: ``G.N``, the N-th write under lease generation G
    (``N`` alone for a key written before the generation was part of it).  For
    a log seq (and an operation id, its BEGIN's seq) N also counts the other
    lanes' residues, so it grows by the number of lanes per entry."""
    generation = generation_of(key)
    count = key - floor(generation)
    return f"{generation}.{count}" if generation else str(count)


def parse_version(text: str) -> int:
    """The version ``key_text`` shows (``G.N``), or the plain number ``--json``
    gives; ValueError, saying why, for anything no version can be."""
    head, dot, tail = text.strip().partition(".")
    digits = set("0123456789")
    if not head or not set(head) <= digits or (dot and (not tail or not set(tail) <= digits)):
        raise ValueError(f"{text!r} is not a record version (G.N as tables show it, "
                         f"or the number --json gives)")
    if not dot:
        key = int(head)
    else:
        generation, count = int(head), int(tail)
        if not 1 <= count < 1 << GENERATION_SHIFT:
            raise ValueError(f"{text!r}: the count after the dot is 1 to "
                             f"{(1 << GENERATION_SHIFT) - 1}")
        key = floor(generation) + count
    if key >= 1 << 64:
        raise ValueError(f"{text!r} is beyond any record version (64 bits)")
    return key
