"""One run per output prefix at a time: a lock file ``PREFIX.lock`` next to each prefix.

A run that starts on a prefix another run is using would delete that run's
temporary files, and the two would then overwrite each other's shards and summary.
So a run takes ``OUTPUT.lock`` and ``DEAD_LETTER.lock`` before it clears anything,
and gives them back when it ends, however it ends (success, failure, Ctrl-C).

- **Taking a lock** is an exclusive create (pipeline/conditional_files.py:
  ``O_EXCL`` locally, ``if_generation_match=0`` on gs://), so of two runs racing for
  a prefix exactly one gets it. The other fails at once with exit 2, naming the
  holder (host, pid, start time, last heartbeat). Being next to the prefix, the
  lock is found whichever path leads there (a symbolic link, ``..``).
- **Neighbouring prefixes.** Beam's sink deletes ``PREFIX-*-of-NNNNN.<ext>`` when
  it finalizes, so ``out/emb`` and ``out/emb-v2`` clobber each other if they run
  at the same time. After taking its own locks, a run looks for live locks of
  such neighbours (names that extend its own by ``-``, or that its own extends)
  and backs off if it finds one: both take first and look second, so of two
  neighbours starting together at least one sees the other.
- **Stale locks.** A killed run (``kill -9``, a crash, a reboot) cannot give its
  lock back. A lock is stale, and the next run takes it over, when
  - its holder ran on this machine (same host name, boot and pid namespace) and
    its process is gone, or that pid is now another process (its start time
    differs); a live holder keeps its lock however long it is stopped; or
  - its holder ran elsewhere and has not refreshed the lock's heartbeat for
    ``STALE_SECONDS``. The holder rewrites the lock every ``HEARTBEAT_SECONDS``.
  Taking over replaces exactly the stale version read (a generation precondition
  on gs://; locally a compare-and-replace), so two runs taking over the same
  stale lock cannot both succeed on Cloud Storage; locally the window is a
  read-compare-rename of microseconds.
- **A lock that is not one** (empty, unreadable, a directory, a symbolic link) is
  never deleted: the run fails with exit 2 naming the file, to be removed by hand.
- **Losing a lock.** If a holder finds its lock replaced (it was stopped for longer
  than ``STALE_SECONDS`` on another host and someone took over), it writes no
  summary and fails: a summary is only ever written by the lock's holder.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Optional

from pipeline import conditional_files

LOCK_SUFFIX = ".lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 600.0  # 20 missed heartbeats: far beyond any clock skew NTP leaves
# How long a reader waits for a lock that is being created (O_EXCL, then the write).
UNREADABLE_RETRY_SECONDS = 1.0
TOOL = "beam-embed"
TAKEOVER_SETTLE_SECONDS = 0.2


def lock_path(prefix: str) -> str:
    return f"{prefix}{LOCK_SUFFIX}"


class LockError(Exception):
    """The prefix cannot be locked; the message names the prefix and why."""


class LockHeld(LockError):
    pass


class LockLost(LockError):
    pass


@dataclasses.dataclass(frozen=True)
class Machine:
    """What tells this machine and process namespace apart from others."""
    host: str
    boot_id: str
    pid_namespace: str

    @staticmethod
    def this() -> "Machine":
        return Machine(socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"),
                       _readlink("/proc/self/ns/pid"))


@dataclasses.dataclass(frozen=True)
class Holder:
    token: str
    machine: Machine
    pid: int
    pid_start: Optional[str]
    started: float
    heartbeat: float
    prefixes: tuple[str, ...]

    @staticmethod
    def me(prefixes: tuple[str, ...]) -> "Holder":
        now = time.time()
        return Holder(uuid.uuid4().hex, Machine.this(), os.getpid(), _process_start(os.getpid()),
                      now, now, prefixes)

    def encode(self) -> bytes:
        fields = dataclasses.asdict(self)
        return json.dumps({"tool": TOOL, **fields}, indent=1).encode("utf-8")

    @staticmethod
    def decode(data: bytes) -> Optional["Holder"]:
        try:
            fields = json.loads(data.decode("utf-8"))
            assert fields.pop("tool") == TOOL
            return Holder(token=str(fields["token"]), machine=Machine(**fields["machine"]),
                          pid=int(fields["pid"]), pid_start=fields["pid_start"],
                          started=float(fields["started"]), heartbeat=float(fields["heartbeat"]),
                          prefixes=tuple(fields["prefixes"]))
        except Exception:  # noqa: BLE001 - anything else is "not a lock of ours"
            return None

    def stale_because(self, now: float) -> Optional[str]:
        """Why this holder no longer holds its lock, or None while it does."""
        if self.machine == Machine.this():
            start = _process_start(self.pid)
            if start is None:
                return f"its process {self.pid} on this machine is gone"
            if self.pid_start is not None and start != self.pid_start:
                return f"pid {self.pid} on this machine is another process now"
            return None
        silent = now - self.heartbeat
        if silent > STALE_SECONDS:
            return f"its heartbeat stopped {silent:.0f} s ago (stale after {STALE_SECONDS:.0f} s)"
        return None

    def describe(self, now: float) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (f"pid {self.pid} on host {self.machine.host}, started {started}, "
                f"last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago")


class PrefixLock:
    """The locks of one run's prefixes; a context manager that releases them."""

    def __init__(self, prefixes: list[str]):
        # Sorted, so that two runs sharing two prefixes take them in the same order.
        self.prefixes = tuple(sorted(set(prefixes)))
        self.holder = Holder.me(self.prefixes)
        self._versions: dict[str, conditional_files.Version] = {}
        self._lost: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._mutex = threading.Lock()

    def acquire(self) -> "PrefixLock":
        try:
            for prefix in self.prefixes:
                self._take(prefix)
            for prefix in self.prefixes:
                self._check_neighbours(prefix)
        except BaseException:
            self.release()
            raise
        self._thread = threading.Thread(target=self._beat, name="beam-embed-lock-heartbeat",
                                        daemon=True)
        self._thread.start()
        logging.info("locked %s", ", ".join(map(lock_path, self.prefixes)))
        return self

    def check_free(self) -> None:
        """Raise LockError if a live run holds one of these prefixes or a neighbour
        (or a lock cannot be read), without taking anything: the launcher's early look,
        before the model loads. ``acquire`` decides."""
        now = time.time()
        for prefix in self.prefixes:
            existing = self._read_existing(lock_path(prefix), prefix)
            holder = Holder.decode(existing[0]) if existing else None
            if holder is not None and holder.stale_because(now) is None:
                raise _held(prefix, holder, now)
            self._check_neighbours(prefix)

    def __enter__(self) -> "PrefixLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def check_held(self) -> None:
        """Raise LockLost unless every lock still holds this run's version."""
        with self._mutex:
            if self._lost:
                raise LockLost(self._lost)
            for prefix, version in self._versions.items():
                current = conditional_files.read(lock_path(prefix))
                if current is None or current[1] != version:
                    raise LockLost(f"{lock_path(prefix)} was taken over by another run while "
                                   "this one held it; this run's output is not marked complete")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._mutex:
            for prefix, version in list(self._versions.items()):
                try:
                    if not conditional_files.delete(lock_path(prefix), version):
                        logging.warning("%s was no longer this run's lock; left in place",
                                        lock_path(prefix))
                except Exception as e:  # noqa: BLE001 - releasing must not hide the run's own error
                    logging.warning("could not remove %s: %s", lock_path(prefix), e)
                del self._versions[prefix]

    def _take(self, prefix: str) -> None:
        path = lock_path(prefix)
        mine = self.holder.encode()
        for _ in range(3):  # a stale lock taken over by a third run meanwhile: look again
            version = conditional_files.create(path, mine)
            if version is not None:
                self._versions[prefix] = version
                return
            existing = self._read_existing(path, prefix)
            if existing is None:  # released meanwhile: create it again
                continue
            data, version = existing
            holder = Holder.decode(data)
            if holder.token == self.holder.token:
                self._versions[prefix] = version  # our own create, retried by the client
                return
            now = time.time()
            reason = holder.stale_because(now)
            if reason is None:
                raise _held(prefix, holder, now)
            replaced = conditional_files.replace(path, mine, version)
            if replaced is not None and self._still_mine(path, replaced):
                logging.warning("took over the stale lock %s: %s", path, reason)
                self._versions[prefix] = replaced
                return
        raise LockHeld(f"{path}: other runs keep taking this lock; try again")

    @staticmethod
    def _still_mine(path: str, version) -> bool:
        """After a local takeover: two runs that compared the stale lock at the same
        moment both replaced it, and the later replace won; the earlier one sees
        that here and backs off. (On gs:// the generation precondition already let
        only one of them through.)"""
        if conditional_files.is_gcs(path):
            return True
        time.sleep(TAKEOVER_SETTLE_SECONDS)
        current = conditional_files.read(path)
        return current is not None and current[1] == version

    def _read_existing(self, path: str, prefix: str):
        """The lock another run holds, waiting briefly for one that is being written."""
        deadline = time.monotonic() + UNREADABLE_RETRY_SECONDS
        while True:
            try:
                current = conditional_files.read(path)
            except OSError as e:
                raise LockError(f"{path}: {e.strerror}; this tool locks {prefix!r} with that "
                                "name: remove it if no run is using the prefix") from None
            if current is None:
                return None
            if Holder.decode(current[0]) is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if Holder.decode(current[0]) is None:
            what = "is empty" if not current[0] else "is not a beam-embed lock"
            raise LockError(f"{path} {what}; this tool locks {prefix!r} with that name: "
                            "remove it if no run is using the prefix")
        return current

    def _check_neighbours(self, prefix: str) -> None:
        now, own = time.time(), set(map(lock_path, self.prefixes))
        for path in _neighbour_locks(prefix):
            try:
                current = None if path in own else conditional_files.read(path)
            except OSError:  # not a lock at all: not a run either
                continue
            holder = Holder.decode(current[0]) if current else None
            if holder is None or holder.token == self.holder.token or holder.stale_because(now):
                continue
            raise LockHeld(f"{path}: another run is writing to a neighbouring prefix "
                           f"({holder.describe(now)}), and Beam's sink of either run would "
                           f"delete the other's shards (it clears PREFIX-*-of-NNNNN files); "
                           f"wait for it to finish, or use another directory for {prefix!r}")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._mutex:
                if self._stop.is_set():
                    return
                beating = dataclasses.replace(self.holder, heartbeat=time.time()).encode()
                for prefix, version in list(self._versions.items()):
                    try:
                        new = conditional_files.replace(lock_path(prefix), beating, version)
                    except Exception as e:  # noqa: BLE001 - a network blip: try again next beat
                        logging.warning("could not refresh %s: %s", lock_path(prefix), e)
                        continue
                    if new is None:
                        self._lost = (f"{lock_path(prefix)} was taken over by another run "
                                      "while this one held it")
                        logging.error("%s", self._lost)
                        del self._versions[prefix]
                    else:
                        self._versions[prefix] = new


def _held(prefix: str, holder: Holder, now: float) -> LockHeld:
    return LockHeld(f"{lock_path(prefix)}: another run is writing to {prefix!r} "
                    f"({holder.describe(now)}); wait for it to finish, or write elsewhere")


def _neighbour_locks(prefix: str) -> list[str]:
    """Lock paths of prefixes in the same directory whose names extend this prefix's
    name by ``-...`` or are extended by it: those whose shards Beam's finalize glob of
    one would delete."""
    directory, _, name = prefix.rpartition("/")
    base = f"{directory}/" if directory else ""
    shorter = [f"{base}{name[:i]}{LOCK_SUFFIX}" for i, c in enumerate(name) if c == "-" and i]
    return shorter + _locks_starting_with(base, f"{name}-")


def _locks_starting_with(base: str, start: str) -> list[str]:
    if conditional_files.is_gcs(base):
        from pipeline.storage_access import storage_client
        bucket, _, directory = base[len("gs://"):].partition("/")
        blobs = storage_client().list_blobs(bucket, prefix=directory + start,
                                            timeout=conditional_files.TIMEOUT)
        return [f"gs://{bucket}/{b.name}" for b in blobs
                if b.name.endswith(LOCK_SUFFIX) and "/" not in b.name[len(directory):]]
    try:
        names = os.listdir(base or ".")
    except OSError:
        return []
    return [f"{base}{n}" for n in names if n.startswith(start) and n.endswith(LOCK_SUFFIX)]


def _process_start(pid: int) -> Optional[str]:
    """The process's start time (clock ticks since boot, from /proc), which tells a
    reused pid apart; None if no such process. Without /proc: "?" if it exists."""
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        fields = stat.rpartition(")")[2].split()  # from field 3 on; the name may hold ")"
        return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is gone too
    if os.path.isdir("/proc/self"):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
