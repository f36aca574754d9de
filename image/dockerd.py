"""A private Docker engine for the image test: Debian's docker.io, its own dockerd.

The daemon gets its own data root, exec root, pidfile and unix socket under one
state directory, so it neither needs nor touches a system Docker, and a second
run on the same machine finds its images and build cache there (the state
directory is the cache; delete it for a cold run). ``--iptables=false
--bridge=none``: this machine's kernel and network allow no bridge, so every
container and build uses ``--network host``.

Debian's client (/usr/bin/docker) is used, not the first ``docker`` on PATH: a
newer client without buildx may come first there, and BuildKit (build secrets,
``RUN --mount``) needs one that talks BuildKit to this daemon.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
APT_PACKAGES = ("docker.io", "debootstrap")


def ensure_packages() -> None:
    """Install Debian's docker.io and debootstrap unless they are there already."""
    if all(os.access(p, os.X_OK) for p in (DOCKER, DOCKERD, DEBOOTSTRAP)):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)


class Dockerd:
    """One dockerd, started by :meth:`start` and stopped by :meth:`stop`."""

    def __init__(self, state_dir: str):
        self.state_dir = os.path.abspath(state_dir)
        self.run_dir = os.path.join(self.state_dir, "run")
        self.socket = os.path.join(self.run_dir, "docker.sock")
        self.pidfile = os.path.join(self.run_dir, "dockerd.pid")
        self.log_path = os.path.join(self.state_dir, "dockerd.log")
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=self.host, DOCKER_BUILDKIT="1",
                    DOCKER_CONFIG=os.path.join(self.state_dir, "client-config"))

    def start(self, timeout: float = 60) -> None:
        self._stop_leftover()
        os.makedirs(self.run_dir, exist_ok=True)
        os.makedirs(os.path.join(self.state_dir, "client-config"), exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [DOCKERD, "--data-root", os.path.join(self.state_dir, "data"),
             "--exec-root", os.path.join(self.run_dir, "exec"),
             "--pidfile", self.pidfile, "-H", self.host,
             "--iptables=false", "--bridge=none", "--storage-driver=overlay2"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.process.returncode}); see {self.log_path}")
            if self.docker("version", check=False, capture=True).returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._unmount_leftovers()

    def _unmount_leftovers(self) -> None:
        """dockerd leaves its host network namespace bind-mounted under the exec root;
        unmounted, the state directory can simply be deleted (rm -rf) for a cold run."""
        with open("/proc/mounts", encoding="utf-8") as f:
            mounts = [line.split()[1] for line in f]
        for mount in reversed(mounts):
            if mount.startswith(self.run_dir + "/"):
                subprocess.run(["umount", mount], check=False, stderr=subprocess.DEVNULL)

    def _stop_leftover(self) -> None:
        """A daemon of an earlier, killed run of this harness holds the same data root."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = self.pidfile.encode() in f.read()
        except (OSError, ValueError):
            return
        if ours:
            os.kill(pid, signal.SIGTERM)
            for _ in range(60):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.5)

    def docker(self, *args: str, check: bool = True, capture: bool = False,
               input: bytes | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=self.env, check=check, input=input,
                              capture_output=capture, timeout=timeout)

    def output(self, *args: str, timeout: float | None = 600) -> str:
        return self.docker(*args, capture=True, timeout=timeout).stdout.decode().strip()


@contextlib.contextmanager
def running_dockerd(state_dir: str):
    """dockerd for the duration of the block; stopped when it ends, however it ends.

    SIGTERM (a CI timeout) becomes KeyboardInterrupt, which pytest treats as an
    interrupt: it stops the session and runs the teardown that stops the daemon.
    """
    ensure_packages()
    daemon = Dockerd(state_dir)
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        signal.signal(signal.SIGTERM, previous)


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"terminated by signal {signum}")
