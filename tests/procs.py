"""Real processes for tests: gunicorn web servers and RQ workers started, watched and stopped.

Every process is started in a session of its own (its own process group), so a signal reaches its children
too (gunicorn's worker, RQ's scheduler process) and a test can kill -9 "the machine" of one worker. Output
goes to a log file whose tail is put in assertion messages. Only processes started here are ever signalled,
by their own group id.

Also: `purge_redis_prefix`, which removes every Redis key a run made under its REDIS_PREFIX (RQ's own keys
included), so runs sharing one Redis never see each other's leftovers.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent if (Path(sys.executable).parent / "gunicorn").exists() else ROOT / ".venv" / "bin"

# settings read from the environment by config.load_settings(): never inherited from the caller's shell
APP_ENV_VARS = ("RELAIS_ENV", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "RELAIS_ENCRYPTION_KEY",
                "PUBLIC_BASE_URL", "PORT", "META_GRAPH_BASE_URL", "API_WEBHOOK_TOLERANCE_SECONDS",
                "SESSION_COOKIE_SECURE", "LOGIN_RATE_LIMIT", "RECONCILE_INTERVAL_SECONDS", "SEND_MAX_ATTEMPTS",
                "EVENT_MAX_ATTEMPTS", "RELAIS_EMBEDDED_WORKER", "RELAIS_ADMIN_EMAIL", "RELAIS_ADMIN_PASSWORD")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_environ(settings: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment (PATH, locale...) without any Relais setting, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in APP_ENV_VARS}
    env.update({"PYTHONUNBUFFERED": "1", **settings})
    return env


def _exited(pid: int) -> bool:
    """True once the process has exited, WITHOUT reaping it: while it is a zombie its pid (our group id) cannot
    be reused, so signalling the group afterwards can only reach what we started."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


@dataclass
class Proc:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.returncode is None and not _exited(self.popen.pid)

    def signal_group(self, sig: int) -> None:
        if self.popen.returncode is not None:  # reaped: the group id may belong to someone else now
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def pause(self) -> None:
        self.signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)

    def kill(self, timeout: float = 10.0) -> None:
        """kill -9 the whole group (the process and its children), then reap."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout)

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM (graceful), SIGKILL after `timeout`; children left behind are killed too."""
        if self.popen.returncode is not None:
            return
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGTERM)
        self._await_exit(timeout)
        self.kill()

    def _await_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _exited(self.popen.pid):
                return True
            time.sleep(0.05)
        return False

    def output(self, tail: int = 6000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-tail:].decode("utf-8", errors="replace")

    def describe(self) -> str:
        state = "running" if self.alive else f"exited ({self.popen.poll()})"
        return f"--- {self.name} (pid {self.pid}, {state}), last output:\n{self.output()}"


@dataclass
class ProcessGroup:
    """Processes started for one test module; `stop_all()` always leaves nothing running."""
    cwd: Path = ROOT
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="relais-procs-")))
    procs: list[Proc] = field(default_factory=list)
    _counter: int = 0

    def start(self, name: str, args: list[str], env: Mapping[str, str], url: str | None = None) -> Proc:
        self._counter += 1
        log_path = self.log_dir / f"{self._counter:02d}-{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(args, cwd=self.cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, args, popen, log_path, url)
        self.procs.append(proc)
        return proc

    def start_web(self, name: str, env: Mapping[str, str], *, threads: int = 32, worker_class: str = "gthread") -> Proc:
        """A gunicorn web process: gthread with `threads` threads, or gevent (the production web worker)."""
        port = free_port()
        kind = ["-k", "gevent", "--worker-connections", "1000"] if worker_class == "gevent" else \
            ["-k", "gthread", "--threads", str(threads)]
        args = [str(BIN / "gunicorn"), "-w", "1", *kind, "--graceful-timeout", "3", "-b", f"127.0.0.1:{port}",
                "wsgi:app"]
        return self.start(name, args, {**env, "PORT": str(port)}, url=f"http://127.0.0.1:{port}")

    def start_worker(self, name: str, env: Mapping[str, str], *extra_args: str) -> Proc:
        return self.start(name, [str(BIN / "python"), "-m", "inbox.jobs.worker", *extra_args], env)

    def running(self, prefix: str = "") -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(prefix) and p.popen.returncode is None]

    def stop(self, procs: Iterable[Proc], timeout: float = 8.0) -> None:
        """Stop several at once (SIGTERM to all, then wait), so shutdown times do not add up."""
        procs = [p for p in procs if p.popen.returncode is None]
        for p in procs:
            p.signal_group(signal.SIGCONT)
            p.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            p._await_exit(max(0.0, deadline - time.monotonic()))
            p.kill()

    def stop_all(self) -> None:
        self.stop(self.procs)

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.procs)


def wait_http_ok(proc: Proc, path: str = "/healthz", timeout: float = 30.0) -> None:
    """Wait until `proc` answers 200 on `path`; fails early, with its output, if it exits."""
    assert proc.url is not None
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if not proc.alive:
            raise AssertionError(f"{proc.name} exited before answering {path}\n{proc.describe()}")
        try:
            response = requests.get(proc.url + path, timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{proc.name} did not answer 200 on {path} within {timeout}s (last: {last})\n"
                         f"{proc.describe()}")


def wait_output(proc: Proc, needle: str, timeout: float = 30.0) -> None:
    """Wait until `needle` appears in the process output (e.g. a worker's "listening on")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in proc.output(tail=1 << 20):
            return
        if not proc.alive:
            raise AssertionError(f"{proc.name} exited before printing {needle!r}\n{proc.describe()}")
        time.sleep(0.05)
    raise AssertionError(f"{proc.name} did not print {needle!r} within {timeout}s\n{proc.describe()}")


def wait_for(condition: Callable[[], Any], timeout: float, message: str | Callable[[], str],
             interval: float = 0.1) -> Any:
    """Poll `condition` until truthy; on timeout fail with `message` (a string or a function giving one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s: {message() if callable(message) else message}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------ Redis
def _rq_job_ids(redis: Any, key: str, kind: bytes) -> set[str]:
    if kind == b"list":
        return {v.decode() for v in redis.lrange(key, 0, -1)}
    if kind == b"zset":
        return {v.decode().split(":", 1)[0] for v in redis.zrange(key, 0, -1)}
    if kind == b"set":
        return {v.decode() for v in redis.smembers(key)}
    return set()


def purge_redis_prefix(redis: Any, prefix: str) -> int:
    """Delete every key this run made: keys containing `prefix` (ours, RQ's queues and registries, the rate
    limiter's), the RQ jobs those queues and registries referenced, and the RQ worker / scheduler records of
    workers that listened to our queues. Returns how many keys were deleted."""
    keys = [k.decode() for k in redis.scan_iter(match=f"*{prefix}*", count=1000)]
    doomed: set[str] = set(keys)
    for key in keys:
        if key.startswith("rq:"):
            for job_id in _rq_job_ids(redis, key, redis.type(key)):
                doomed.update({f"rq:job:{job_id}", f"rq:results:{job_id}", f"rq:job:{job_id}:dependents",
                               f"rq:job:{job_id}:dependencies", f"rq:executions:{job_id}"})
                doomed.update(f"rq:execution:{job_id}:{e.decode()}"
                              for e in redis.zrange(f"rq:executions:{job_id}", 0, -1))
    stale_workers = []
    for pattern in ("rq:worker:*", "rq:scheduler:*"):
        for raw in redis.scan_iter(match=pattern, count=1000):
            key = raw.decode()
            if redis.type(key) != b"hash":
                continue
            queues = redis.hget(key, "queues") or b""
            if prefix.encode() in queues:
                doomed.update({key, key + ":executions"})
                if key.startswith("rq:worker:"):
                    stale_workers.append(key)
    deleted = 0
    doomed_list = sorted(doomed)
    for i in range(0, len(doomed_list), 500):
        deleted += redis.delete(*doomed_list[i:i + 500])
    if stale_workers:
        redis.srem("rq:workers", *stale_workers)
    our_queues = [q for q in redis.smembers("rq:queues") if prefix.encode() in q]  # RQ's list of every queue
    if our_queues:
        redis.srem("rq:queues", *our_queues)
    return deleted


# ------------------------------------------------------------------------------------------------ Socket.IO
class LiveEvents:
    """A python-socketio client recording every event it receives as (name, payload), in arrival order."""

    def __init__(self) -> None:
        import threading

        import socketio

        self._lock = threading.Lock()
        self._events: list[tuple[str, Any]] = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._record)

    def _record(self, name: str, data: Any = None) -> None:
        """Live and replayed events arrive in `events` frames: each envelope is recorded as (its event, it)."""
        with self._lock:
            if name == "events" and isinstance(data, list):
                self._events.extend((envelope["event"], envelope) for envelope in data)
            else:
                self._events.append((name, data))

    def connect(self, url: str, auth: dict[str, Any] | None = None, timeout: float = 10.0,
                transports: tuple[str, ...] = ("websocket",)) -> "LiveEvents":
        self.sio.connect(url, auth=auth, transports=list(transports), wait_timeout=timeout)
        return self

    def disconnect(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()
        self.sio.shutdown()

    @property
    def events(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self._events)

    def named(self, name: str) -> list[Any]:
        return [data for n, data in self.events if n == name]

    def wait_for(self, predicate: Callable[[str, Any], bool], timeout: float, what: str) -> tuple[str, Any]:
        """The first recorded event matching `predicate(name, payload)`, waiting up to `timeout` seconds."""
        found = wait_for(lambda: next(((n, d) for n, d in self.events if predicate(n, d)), None), timeout,
                         lambda: f"no live event {what}; received: {[(n, _brief(d)) for n, d in self.events]}",
                         interval=0.02)
        return found


def _brief(data: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        inner = data["data"]
        return {"seq": data.get("seq"), **{k: inner[k] for k in ("id", "text", "delivery_status") if k in inner}}
    return data
