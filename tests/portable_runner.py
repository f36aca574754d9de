"""Beam's portable Fn API path, client side: a job service, and the CLI submitting to it.

This is how Dataflow Runner v2 runs the pipeline: the launcher turns it into a
pipeline proto (coders, pickled DoFns) and the job service hands each stage to SDK
harnesses of an external worker pool, in processes (or containers) of their own.

    with job_service_and_worker_pool(log_dir, worker_env={...}) as (jobs, workers):
        result = run_cli_portable(["--input=...", "--output=..."], jobs, workers)

    with running(start_job_service(log_dir)) as jobs:   # a worker pool elsewhere
        result = run_cli_portable([...], jobs, "localhost:PORT")

``start_worker_pool`` runs Beam's ``worker_pool_main`` from this environment; the
image test starts the same module inside a container instead (``start_service``
with its ``docker run``, then ``wait_for_port``) and passes its endpoint. The job
service tells workers to call back on ``localhost`` ports, so a worker pool in a
container needs the host's network.
Every wait is bounded and every service is stopped on the way out, so a hang fails
a test instead of blocking CI.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator, Mapping, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 60.0
CLI_TIMEOUT = 240.0


class ServiceError(RuntimeError):
    """A service did not start, or died; the message quotes the end of its log."""


class Service:
    """A process ``start_service`` started, serving on ``endpoint`` (``localhost:PORT``),
    its output in ``log``."""

    def __init__(self, name: str, process: subprocess.Popen, log: str):
        self.name, self.process, self.log = name, process, log
        self.endpoint = ""
        self.port_source = (lambda: "", "")  # (read the port it announced, where)

    def log_tail(self, chars: int = 3000) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()[-chars:]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServiceError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the service's process group (it holds the SDK harnesses a worker
        pool started), SIGKILL if it does not go within ``timeout``."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.process, signal.SIGKILL)  # harnesses left behind, if any
        if self.process.poll() is None:
            self.process.wait(timeout)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """``sig`` to the process group ``start_service`` made it lead: its children too, even
    once the leader is gone (the kernel keeps a group's id while any member lives)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def free_port() -> int:
    """A loopback port nothing listens on now (for a service that needs one given)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = START_TIMEOUT, service: Optional[Service] = None,
                  host: str = "127.0.0.1") -> None:
    """Until something accepts connections on ``host:port``; fails early if ``service`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if service is not None:
            service.check_alive()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            if s.connect_ex((host, port)) == 0:
                return
        if time.monotonic() > deadline:
            tail = f":\n{service.log_tail()}" if service else ""
            raise ServiceError(f"nothing listens on {host}:{port} after {timeout:.0f} s{tail}")
        time.sleep(0.2)


def python_env(python: str = sys.executable, extra: Optional[Mapping[str, str]] = None) -> dict:
    """This environment for a child process: ``python``'s bin/ first on PATH (the worker
    pool starts every SDK harness as the ``python`` it finds there; a wrong one fails
    with ``No module named 'apache_beam'`` and the job hangs) and this repository first
    on PYTHONPATH (harnesses unpickle the pipeline's DoFns by module name)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(python)), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, env.get("PYTHONPATH", "")] if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env


def start_service(name: str, command: Sequence[str], log_dir: str, env: Mapping[str, str]) -> Service:
    """``command`` in a process group of its own (stopping it stops its children too),
    its output in ``log_dir/NAME.log``."""
    os.makedirs(log_dir, exist_ok=True)
    log = os.path.join(log_dir, f"{name}.log")
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=dict(env), cwd=log_dir,
                                   start_new_session=True)
    return Service(name, process, log)


def start_job_service(log_dir: str, python: str = sys.executable, wait: bool = True,
                      timeout: float = START_TIMEOUT) -> Service:
    """Beam's Python job service on a port it picks itself (no race for a free port)."""
    port_file = os.path.join(log_dir, "job-service.port")
    with contextlib.suppress(FileNotFoundError):
        os.remove(port_file)
    service = start_service("job-service", [python, "-m", "apache_beam.runners.portability.local_job_service_main",
                                     "--port=0", f"--port_file={port_file}"], log_dir, python_env(python))
    service.port_source = (lambda: _read(port_file), "its port file")
    if wait:
        wait_until_ready(service, timeout)
    return service


def start_worker_pool(log_dir: str, python: str = sys.executable,
                      env: Optional[Mapping[str, str]] = None, wait: bool = True,
                      timeout: float = START_TIMEOUT) -> Service:
    """Beam's external SDK worker pool (``worker_pool_main``), as Beam's boot runs it in
    worker-pool mode; ``env`` is added to the environment its harnesses inherit."""
    # worker_pool_main logs the port it bound only if logging is configured (its
    # "Listening" line comes before it sets the level), so it runs under basicConfig:
    # port 0 and that line, no race for a free port.
    command = [python, "-c", "import logging; logging.basicConfig(level=logging.INFO); "
               "from apache_beam.runners.worker import worker_pool_main; "
               "worker_pool_main.main(['--service_port=0'])"]
    service = start_service("worker-pool", command, log_dir, python_env(python, env))
    listening = re.compile(r"Listening for workers at localhost:(\d+)")
    service.port_source = (lambda: _match(listening, service.log_tail(1 << 20)),
                           "'Listening for workers at' in its log")
    if wait:
        wait_until_ready(service, timeout)
    return service


def wait_until_ready(service: Service, timeout: float = START_TIMEOUT) -> Service:
    """Until ``service`` has told its port and accepts connections there; stops it and
    raises ServiceError if it dies or takes longer than ``timeout``."""
    read_port, what = service.port_source
    try:
        port = _wait_for_text(read_port, timeout, service, what)
        wait_for_port(int(port), timeout, service)
    except BaseException:
        service.stop()
        raise
    service.endpoint = f"localhost:{port}"
    return service


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    """``with running(start_job_service(log_dir)) as jobs:``: stopped on the way out."""
    try:
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def job_service_and_worker_pool(log_dir: str, python: str = sys.executable,
                                worker_env: Optional[Mapping[str, str]] = None,
                                timeout: float = START_TIMEOUT) -> Iterator[tuple[Service, Service]]:
    """Both services, started side by side (each takes seconds to import Beam)."""
    started = []
    try:
        started.append(start_job_service(log_dir, python, wait=False))
        started.append(start_worker_pool(log_dir, python, worker_env, wait=False))
        for service in started:
            wait_until_ready(service, timeout)
        yield started[0], started[1]
    finally:
        for service in started:
            service.stop()


def portable_options(job_endpoint: str, worker_endpoint: str) -> list[str]:
    """The Beam flags that send a run to ``job_endpoint``, its SDK work to the external
    worker pool at ``worker_endpoint``."""
    return ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}",
            "--environment_type=EXTERNAL", f"--environment_config={worker_endpoint}"]


def run_cli_portable(args: Sequence[str], jobs: Service, worker_endpoint: str | Service,
                     python: str = sys.executable, env: Optional[Mapping[str, str]] = None,
                     timeout: float = CLI_TIMEOUT, log_dir: Optional[str] = None
                     ) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` as a client of the job service, in a process of its
    own (killed after ``timeout``); stdout holds the summary it prints (``--json``)."""
    endpoint = worker_endpoint.endpoint if isinstance(worker_endpoint, Service) else worker_endpoint
    command = [python, "-m", "pipeline", *args, "--json", *portable_options(jobs.endpoint, endpoint)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                env=python_env(python, env), cwd=log_dir or REPO,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise ServiceError(f"the portable run did not finish in {timeout:.0f} s; "
                           f"job service log:\n{jobs.log_tail()}\nclient stderr:\n"
                           f"{(e.stderr or b'')[-3000:]!r}") from None
    jobs.check_alive()
    return result


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def _match(pattern: re.Pattern, text: str) -> str:
    match = pattern.search(text)
    return match.group(1) if match else ""


def _wait_for_text(read, timeout: float, service: Service, what: str) -> str:
    deadline = time.monotonic() + timeout
    while not (text := read()):
        service.check_alive()
        if time.monotonic() > deadline:
            raise ServiceError(f"{service.name} did not write {what} in {timeout:.0f} s:\n"
                               f"{service.log_tail()}")
        time.sleep(0.2)
    return text
