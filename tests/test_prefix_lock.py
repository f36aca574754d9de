"""One run per output prefix (issue 13, finding 5): run B started on a prefix while
run A was running deleted A's temporary files, and A then replaced B's finished
output. Each prefix is now locked (pipeline/prefix_lock.py), on local disks and on
gs:// (against the in-process emulator, made to honour generation preconditions).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest

from pipeline import conditional_files, prefix_lock
from pipeline.prefix_lock import Holder, LockError, LockHeld, LockLost, Machine, PrefixLock, lock_path
from tests.gcs_emulator import emulated_gcs
from tests.pipeline_helpers import fails_with, module_args, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "beam-embed-locks"
NO_MODEL = ["--preprocessor=/nonexistent/preprocessor", "--encoder=/nonexistent/encoder"]


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path, monkeypatch):
    """A directory to put prefixes in: local, or gs:// on the emulator."""
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    pytest.importorskip("gcp_storage_emulator.server")
    with emulated_gcs(monkeypatch, tmp_path, BUCKET):
        yield f"gs://{BUCKET}/out"


def read_lock(prefix):
    current = conditional_files.read(lock_path(prefix))
    return None if current is None else Holder.decode(current[0])


def plant_lock(prefix, **changes):
    """A lock as another run would have written it; fields changed as given."""
    holder = dataclasses.replace(Holder.me((prefix,)), **changes)
    assert conditional_files.create(lock_path(prefix), holder.encode()) is not None
    return holder


def finished_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_emulator_honours_generation_preconditions(root):
    if not root.startswith("gs://"):
        pytest.skip("a Cloud Storage precondition")
    path = f"{root}/x"
    first = conditional_files.create(path, b"one")
    assert first is not None
    assert conditional_files.create(path, b"two") is None
    assert conditional_files.read(path) == (b"one", first)
    assert conditional_files.replace(path, b"three", first + 1) is None
    second = conditional_files.replace(path, b"three", first)
    assert second is not None and second != first
    assert not conditional_files.delete(path, first)
    assert conditional_files.delete(path, second)
    assert conditional_files.read(path) is None


def test_a_second_run_is_refused_naming_the_holder_and_release_removes_the_lock(root):
    prefix = f"{root}/emb"
    with PrefixLock([prefix, f"{prefix}-errors"]) as lock:
        assert read_lock(prefix).token == lock.holder.token
        for others in ([prefix], [f"{root}/elsewhere", f"{prefix}-errors"]):
            with pytest.raises(LockHeld, match=rf"pid {os.getpid()} on host .*last heartbeat"):
                PrefixLock(others).acquire()
        with pytest.raises(LockHeld):
            PrefixLock([prefix]).check_free()
        assert read_lock(f"{root}/elsewhere") is None  # the refused run gave its lock back
        lock.check_held()
    assert read_lock(prefix) is None and read_lock(f"{prefix}-errors") is None
    PrefixLock([prefix]).acquire().release()


def test_the_lock_is_found_through_a_symbolic_link_and_dot_dot(tmp_path):
    (tmp_path / "real/sub").mkdir(parents=True)
    os.symlink(tmp_path / "real", tmp_path / "link")
    with PrefixLock([str(tmp_path / "real/emb")]):
        for spelling in ("link/emb", "real/sub/../emb", "link/./emb"):
            with pytest.raises(LockHeld):
                PrefixLock([str(tmp_path / spelling)]).acquire()


@pytest.mark.parametrize("neighbour", ["emb-v2", "emb-errors-2", "e"])
def test_a_neighbouring_prefix_that_beams_glob_would_clobber_is_refused(root, neighbour):
    """out/emb's sink deletes out/emb-*-of-NNNNN: out/emb-v2 must not run beside it
    (and out/e, whose glob matches out/e-..., not out/emb, may)."""
    with PrefixLock([f"{root}/emb", f"{root}/emb-errors"]):
        if neighbour == "e":
            PrefixLock([f"{root}/e"]).acquire().release()
        else:
            with pytest.raises(LockHeld, match="neighbouring prefix"):
                PrefixLock([f"{root}/{neighbour}"]).acquire()
            assert read_lock(f"{root}/{neighbour}") is None
    with PrefixLock([f"{root}/emb-v2"]):  # and the other way round
        with pytest.raises(LockHeld, match="neighbouring prefix"):
            PrefixLock([f"{root}/emb"]).acquire()
        for independent in ("emb2", "emb-v2/emb", "emb.lock", "x/emb"):
            PrefixLock([f"{root}/{independent}"]).acquire().release()


def test_a_stale_lock_of_a_dead_process_on_this_machine_is_taken_over(root):
    prefix = f"{root}/emb"
    plant_lock(prefix, pid=finished_pid(), token="dead")
    with PrefixLock([prefix]) as lock:
        assert read_lock(prefix).token == lock.holder.token
    assert read_lock(prefix) is None


def test_a_zombie_does_not_hold_a_lock(tmp_path):
    """A holder that has exited but is not yet reaped by its parent is gone too."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    start = prefix_lock._process_start(process.pid)
    deadline = time.monotonic() + 30
    while prefix_lock._process_start(process.pid) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert os.path.exists(f"/proc/{process.pid}")  # exited, not reaped
    plant_lock(str(tmp_path / "emb"), pid=process.pid, pid_start=start, token="zombie")
    PrefixLock([str(tmp_path / "emb")]).acquire().release()
    process.wait()


def test_a_reused_pid_does_not_hold_a_lock(root):
    """Same pid, another start time: the holder died and its pid went to a new process."""
    plant_lock(f"{root}/emb", pid=os.getpid(), pid_start="1", token="old")
    PrefixLock([f"{root}/emb"]).acquire().release()


def test_a_live_process_on_this_machine_holds_its_lock_whatever_its_heartbeat(root):
    plant_lock(f"{root}/emb", heartbeat=time.time() - 10 * prefix_lock.STALE_SECONDS)
    with pytest.raises(LockHeld):
        PrefixLock([f"{root}/emb"]).acquire()


def test_another_hosts_lock_is_stale_only_once_its_heartbeat_stops(root):
    elsewhere = Machine("another-host", "another-boot", "pid:[1]")
    plant_lock(f"{root}/fresh", machine=elsewhere, pid=1,
               heartbeat=time.time() - prefix_lock.STALE_SECONDS / 2)
    with pytest.raises(LockHeld, match="on host another-host"):
        PrefixLock([f"{root}/fresh"]).acquire()
    plant_lock(f"{root}/stale", machine=elsewhere, pid=1,
               heartbeat=time.time() - prefix_lock.STALE_SECONDS - 5)
    PrefixLock([f"{root}/stale"]).acquire().release()


@pytest.mark.parametrize("content", [b"", b"garbage", b'{"tool": "beam-embed"}', b"\xff\xfe"])
def test_a_lock_that_is_not_one_is_reported_and_left_alone(root, content):
    path = lock_path(f"{root}/emb")
    conditional_files.create(path, content)
    for attempt in (PrefixLock([f"{root}/emb"]).acquire, PrefixLock([f"{root}/emb"]).check_free):
        with pytest.raises(LockError, match="remove it if no run is using the prefix"):
            attempt()
    assert conditional_files.read(path)[0] == content


def test_a_lock_path_that_is_a_directory_or_a_link_is_reported_and_left_alone(tmp_path):
    os.makedirs(tmp_path / "emb.lock")
    os.symlink(tmp_path / "target", tmp_path / "linked.lock")
    (tmp_path / "target").write_bytes(Holder.me(("x",)).encode())
    for name, what in (("emb", "is a directory"), ("linked", "symbolic link")):
        with pytest.raises(LockError, match=what):
            PrefixLock([str(tmp_path / name)]).acquire()
    assert (tmp_path / "emb.lock").is_dir() and (tmp_path / "linked.lock").is_symlink()


def test_the_heartbeat_refreshes_the_lock_and_a_lost_lock_is_noticed(root, monkeypatch):
    monkeypatch.setattr(prefix_lock, "HEARTBEAT_SECONDS", 0.1)
    prefix = f"{root}/emb"
    lock = PrefixLock([prefix]).acquire()
    try:
        first = read_lock(prefix).heartbeat
        deadline = time.monotonic() + 10
        while read_lock(prefix).heartbeat == first:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
        lock.check_held()
        # Another run takes the lock over (as it would after STALE_SECONDS of silence).
        data, version = conditional_files.read(lock_path(prefix))
        conditional_files.replace(lock_path(prefix), Holder.me((prefix,)).encode(), version)
        with pytest.raises(LockLost, match="taken over"):
            lock.check_held()
    finally:
        lock.release()
    assert read_lock(prefix) is not None  # the other run's lock is not removed


RACER = """
import os, sys, time
from pipeline.prefix_lock import LockHeld, PrefixLock
go = sys.argv[1]
if sys.argv[2].startswith("gs://"):  # connect first: the race is for the lock, not imports
    from pipeline.storage_access import storage_client
    storage_client()
while not os.path.exists(go):
    time.sleep(0.001)
try:
    lock = PrefixLock([sys.argv[2]]).acquire()
except LockHeld:
    print("held")
else:
    time.sleep(3)
    print("won")
    lock.release()
"""


@pytest.mark.parametrize("race", ["same", "stale", "neighbours"])
def test_runs_racing_for_a_prefix_in_parallel_processes(root, tmp_path, race):
    """Six processes start at once: on one prefix (free, or held by a dead run's stale
    lock that all of them take over together), or on two neighbouring prefixes."""
    go = tmp_path / "go"
    prefixes = [f"{root}/emb" if race != "neighbours" or i % 2 else f"{root}/emb-v2"
                for i in range(6)]
    if race == "stale":
        plant_lock(f"{root}/emb", pid=finished_pid(), token="dead")
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(go), prefix], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": REPO})
              for prefix in prefixes]
    time.sleep(3.0)  # all started and waiting
    go.write_text("go")
    outcomes = [racer.communicate(timeout=60) for racer in racers]
    results = [out.decode().strip() for out, _ in outcomes]
    assert all(r in ("won", "held") for r in results), [err.decode()[-500:] for _, err in outcomes]
    winners = results.count("won")
    assert winners == 1 if race != "neighbours" else winners <= 1, results
    assert read_lock(f"{root}/emb") is None and read_lock(f"{root}/emb-v2") is None


# The command line.

@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("hello\nworld\n", encoding="utf-8")
    return tmp_path


def test_a_second_run_fails_with_exit_2_before_the_model_loads_and_clears_nothing(
        capsys, scratch):
    """The issue's run B: it deleted run A's temporary directory and exited 0."""
    temp = scratch / f"o/beam-temp-emb-{'a' * 32}"
    temp.mkdir(parents=True)
    (temp / "part").write_bytes(b"run A is writing this")
    (scratch / "o/emb-summary.json").write_text("{}")
    with PrefixLock(["o/emb", "o/emb-errors"]):  # run A
        err = fails_with(capsys, ["--input=in.txt", "--output=o/emb", *NO_MODEL],
                         "o/emb.lock: another run is writing to 'o/emb'", f"pid {os.getpid()}")
        assert len(err.strip().splitlines()) == 1
        fails_with(capsys, ["--input=in.txt", "--output=o/x", "--dead_letter=o/emb-errors",
                            *NO_MODEL], "another run is writing to 'o/emb-errors'")
    assert (temp / "part").read_bytes() == b"run A is writing this"
    assert (scratch / "o/emb-summary.json").exists()


def test_a_run_that_loses_the_race_after_its_checks_exits_2(capsys, scratch, tiny_random_model,
                                                            monkeypatch):
    """Run A takes the lock after run B's early look (B's model is loading meanwhile)."""
    from pipeline import config
    monkeypatch.setattr(config.PrefixLock, "check_free", lambda self: None)
    with PrefixLock(["o/emb"]):
        fails_with(capsys, ["--input=in.txt", "--output=o/emb", *module_args(tiny_random_model)],
                   "another run is writing to 'o/emb'")
    assert not (scratch / "o/emb-summary.json").exists()


def test_the_locks_are_released_after_success_and_after_a_failure(scratch, tiny_random_model,
                                                                  monkeypatch, capsys):
    # One worker, so one shard to list (two workers write a shard per bundle).
    run_cli("--input=in.txt", "--output=o/emb", *module_args(tiny_random_model), "--direct_num_workers=1")
    assert sorted(os.listdir(scratch / "o")) == ["emb-00000-of-00001.parquet",
                                                 "emb-errors-00000-of-00001.jsonl",
                                                 "emb-summary.json"]
    from pipeline import main, run

    def fail(*args):
        raise RuntimeError("the pipeline failed")
    monkeypatch.setattr(run, "clear_previous_run", fail)
    capsys.readouterr()
    assert main.main(["--input=in.txt", "--output=o/emb", *module_args(tiny_random_model),
                      "--runner=FnApiRunner"]) == 1
    err = capsys.readouterr().err
    assert "the run failed: RuntimeError: the pipeline failed" in err
    # It failed before clearing anything: the earlier run's output stands, and says so.
    assert "o/emb-summary.json is in place, so the output it describes is complete" in err
    assert os.path.exists(scratch / "o" / "emb-summary.json")
    assert not [n for n in os.listdir(scratch / "o") if n.endswith(".lock")]


def test_the_launcher_path_holds_the_lock_only_until_the_job_is_submitted(
        capsys, scratch, tiny_random_model):
    """main(wait=False), as the Flex Template launcher calls it: refused while another
    run holds the prefix; once submitted, no lock is left for a job nobody refreshes."""
    from pipeline.main import main
    args = ["--input=in.txt", "--output=o/emb", *module_args(tiny_random_model),
            "--runner=FnApiRunner"]
    with PrefixLock(["o/emb"]):
        assert main(args, wait=False) == 2
    assert "another run is writing" in capsys.readouterr().err
    assert main(args, wait=False) == 0
    assert not [n for n in os.listdir(scratch / "o") if n.endswith(".lock")]
