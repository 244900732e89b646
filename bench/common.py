"""Shared plumbing for the benchmarks: a fresh production-like stack per run, machine facts, result files.

A `Stack` creates a fresh PostgreSQL database, migrates it with alembic, seeds it (`bench.seed`), starts
`gunicorn -w 1 -k gevent wsgi:app` (the README's production web worker; `worker_class="gthread"` for threads)
and `python -m inbox.jobs.worker` processes with their own
REDIS_PREFIX, and on exit stops exactly the processes it started, drops the database and deletes its Redis keys.
Everything listens on 127.0.0.1 only.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"
PY = sys.executable
GUNICORN = str(Path(PY).parent / "gunicorn")
ALEMBIC = str(Path(PY).parent / "alembic")
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
APP_SECRET = "test-app-secret"      # tests.factories.APP_SECRET (build_world)
PAGE_ID = "1000000001"              # tests.factories.PAGE_ID
# RQ worker processes of a benchmark stack (`BENCH_WORKERS`): the README's sizing, one per core the web process and
# PostgreSQL leave free, so one on these 2 shared cores (bench.worker_count compares 1 and 2)
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))


# ------------------------------------------------------------------ small helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of `values`, None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.1f} ms"


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (seconds), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_info(command: str | None = None) -> dict[str, Any]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
        fsync = conn.execute("SHOW fsync").fetchone()[0]  # type: ignore[index]
    import redis
    r = redis.Redis.from_url(REDIS_URL)
    redis_version = r.info("server")["redis_version"]
    r.close()
    return {
        "nproc": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "cpu_model": cpu_model,
        "load_avg_at_start": os.getloadavg(), "cpu_probe_ms": cpu_probe_ms(),
        "postgresql": pg_version, "pg_fsync": fsync, "pg_synchronous_commit": sync_commit,
        "redis": redis_version, "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command or "python -m " + " ".join([_module_name()] + [shlex.quote(a) for a in sys.argv[1:]]),
    }


def cpu_probe_ms(n: int = 2_000_000, tries: int = 3) -> float:
    """The box's speed for one Python thread right now: the best of `tries` timings of a fixed pure-Python loop
    (`n` additions), in ms. These VMs share their cores with other tenants, and the same code's figures move by
    tens of percent between runs an hour apart; this probe, in every figure's machine line, says how fast the box
    was when a figure started (lower is faster; compare it between figures, not with other machines)."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def machine_line(info: dict[str, Any]) -> str:
    return (f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB RAM, "
            f"load average at start {', '.join(f'{x:.2f}' for x in info['load_avg_at_start'])}"
            + (f", CPU probe {info['cpu_probe_ms']} ms" if info.get("cpu_probe_ms") is not None else "") + "; "
            f"PostgreSQL {info['postgresql']} (fsync={info['pg_fsync']}, synchronous_commit="
            f"{info['pg_synchronous_commit']}), Redis {info['redis']}, Python {info['python']}; "
            f"{info['date']}; command: `{info['command']}`")


def revision(rev: str) -> str:
    """A commit's short hash (`git rev-parse --short`)."""
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


@contextlib.contextmanager
def baseline_worktree(rev: str) -> Iterator[Path]:
    """`rev` checked out with `git worktree` in a temporary directory, removed on exit (the A/B benchmarks: it runs
    with this checkout's virtualenv)."""
    tree = Path(tempfile.mkdtemp(prefix="relais-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True, capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tree, ignore_errors=True)


def save_json(name: str, data: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def save_figure(name: str, results: dict[str, Any], report: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """A figure's end: its raw results to bench/out/<name>.json and `report(results)` into its section of
    RESULTS.md. Returns the results."""
    save_json(name, results)
    write_section(name, report(results))
    return results


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section between `<!-- bench:name -->` markers in bench/RESULTS.md."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Relais benchmark results\n\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def wait_http(url: str, timeout: float = 30.0) -> None:
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def run_procs(commands: list[list[str]], env: dict[str, str] | None = None, timeout: float = 300) -> None:
    """Start every command at once (separate processes) and wait for all; raise if one fails."""
    procs = [subprocess.Popen(c, cwd=ROOT, env=env) for c in commands]
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            rc = p.wait(max(1.0, deadline - time.monotonic()))
            if rc != 0:
                raise RuntimeError(f"{p.args} exited with {rc}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# ------------------------------------------------------------------ the stack
def worker_args(worker_class: str, threads: int) -> list[str]:
    """gunicorn's worker options: gthread with `threads` threads, or gevent with room for `threads` connections
    (a websocket holds one for its life either way)."""
    if worker_class == "gevent":
        return ["-k", "gevent", "--worker-connections", str(max(threads, 1000))]
    return ["-k", "gthread", "--threads", str(threads)]


@dataclass
class Stack:
    workers: int = WORKERS
    threads: int = 64
    worker_class: str = "gevent"    # gunicorn -k: gevent (the README's production web worker) or gthread
    agents: int = 0                 # extra agents (with API tokens) in the brand's team
    # bench.fake_graph in its own process (META_GRAPH_BASE_URL): the Graph API a production page talks to, so new
    # Messenger contacts get their names looked up (a job, a GET, a conversation.updated) as in production.
    # False points META_GRAPH_BASE_URL at a closed port: every lookup fails at once and is retried 15 s later.
    fake_meta: bool = True
    worker_profile: bool = False    # workers under pyinstrument (bench.profiled_worker)
    web_profile: str = ""           # a path: the web worker under yappi (bench/gunicorn_yappi.py) writes it at exit
    root: Path = ROOT               # the checkout whose app runs (migrations, seed, web, workers): bench.ab's baseline
    label: str = "bench"
    db_name: str = ""
    prefix: str = ""
    port: int = 0
    fake_port: int = 0
    world: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return PG_ADMIN.rsplit("/", 1)[0] + "/" + self.db_name

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_"))}
        env.update(DATABASE_URL=self.database_url, REDIS_URL=REDIS_URL, REDIS_PREFIX=self.prefix,
                   SECRET_KEY="bench-" + secrets.token_hex(16), RELAIS_ENV="test", PYTHONUNBUFFERED="1",
                   META_GRAPH_BASE_URL=(f"{self.fake_url}/v21.0" if self.fake_meta else "http://127.0.0.1:9/v21.0"),
                   PORT=str(self.port), PUBLIC_BASE_URL=self.base_url)
        return env

    def __enter__(self) -> "Stack":
        tag = f"{datetime.now().strftime('%H%M%S')}_{secrets.token_hex(3)}"
        self.db_name = f"relais_bench_{tag}"
        self.prefix = f"relais-bench-{tag}:"
        self.port = free_port()
        self.fake_port = free_port()

        def _terminate(*_: object) -> None:
            raise SystemExit("terminated")
        signal.signal(signal.SIGTERM, _terminate)  # a killed benchmark still stops its processes
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _logfile(self, name: str):
        OUT.mkdir(parents=True, exist_ok=True)
        f = open(OUT / f"{self.label}-{name}.log", "w")
        self.logs.append(f)
        return f

    def _start(self) -> None:
        log(f"stack: database {self.db_name}, redis prefix {self.prefix}, web port {self.port}")
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        env = self.env()
        subprocess.run([ALEMBIC, "upgrade", "head"], cwd=self.root, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seeded = subprocess.run([PY, "-m", "bench.seed", "--agents", str(self.agents)], cwd=self.root,
                                env={**env, "REDIS_URL": ""}, check=True, capture_output=True, text=True)
        self.world = json.loads(seeded.stdout.strip().splitlines()[-1])
        if self.fake_meta:
            self._spawn("fake", [PY, "-m", "bench.fake_graph", "--port", str(self.fake_port),
                                 "--app-secret", APP_SECRET], env)
        web = [GUNICORN, "-w", "1", *worker_args(self.worker_class, self.threads), "-b",
               f"127.0.0.1:{self.port}", "--log-level", "warning"]
        if self.web_profile:
            web += ["-c", str(BENCH / "gunicorn_yappi.py")]
            env = {**env, "BENCH_YAPPI_OUT": self.web_profile}
        self._spawn("web", web + ["wsgi:app"], env)
        for i in range(self.workers):
            cmd = [PY, "-m", "bench.profiled_worker", "--out", str(OUT / f"profile-worker-{i}")] \
                if self.worker_profile else [PY, "-m", "inbox.jobs.worker"]
            self._spawn(f"worker{i}", cmd, env)
        wait_http(self.base_url + "/webhooks/meta", timeout=60)
        if self.fake_meta:
            wait_http(self.fake_url + "/_fake/requests")
        time.sleep(1.0)  # let the workers register on their queues

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        out = self._logfile(name)
        self.procs[name] = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def tree_pids(self, name: str) -> list[int]:
        """Process `name` and its children (a gunicorn arbiter and its worker process)."""
        master = self.procs[name].pid
        children = Path(f"/proc/{master}/task/{master}/children")
        return [master, *([int(x) for x in children.read_text().split()] if children.exists() else [])]

    def web_pids(self) -> list[int]:
        """The gunicorn arbiter and its one worker process (then those of any `add_web` process)."""
        return [pid for name in self.procs if name.startswith("web") for pid in self.tree_pids(name)]

    def add_web(self, name: str, threads: int) -> str:
        """Another gunicorn web process of the same deployment (e.g. one that only takes webhooks); its URL.
        It gets the first web process's exact environment: SECRET_KEY derives the key that decrypts channel
        credentials, so every process of a deployment must share it."""
        raw = Path(f"/proc/{self.procs['web'].pid}/environ").read_bytes().split(b"\0")
        env = dict(x.decode().split("=", 1) for x in raw if b"=" in x)
        env.pop("BENCH_YAPPI_OUT", None)
        port = free_port()
        self._spawn(name, [GUNICORN, "-w", "1", *worker_args(self.worker_class, threads), "-b",
                           f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"], env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/webhooks/meta", timeout=60)
        return url

    def worker_pids(self) -> list[int]:
        return [p.pid for n, p in self.procs.items() if n.startswith("worker")]

    def cpu_snapshot(self) -> dict[str, float]:
        return {"web": sum(cpu_seconds(p) for p in self.web_pids()),
                "workers": sum(cpu_seconds(p) for p in self.worker_pids()),
                "postgres_total": _postgres_cpu()}

    def sql(self, query: str, *args: Any) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(query, args or None).fetchall()

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)  # its own session: only what this stack started
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __exit__(self, *exc: object) -> None:
        for name in list(self.procs):
            self.stop_process(name, signal.SIGINT if name.startswith("worker") else signal.SIGTERM)
        for f in self.logs:
            f.close()
        if self.db_name:
            try:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except Exception as e:  # noqa: BLE001
                log(f"could not drop {self.db_name}: {e}")
        if self.prefix:
            delete_redis_prefix(self.prefix)
        log(f"stack {self.db_name} torn down")


def box_cpu() -> tuple[float, float, float]:
    """The whole box's CPU seconds so far (all cores, /proc/stat): busy (user, nice, system, irq, softirq), of
    which the kernel's (system, irq, softirq), and the hypervisor's steal."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, (system + irq + softirq) / tick, steal / tick


class CpuTimeline:
    """Cores used by each part of a run, interval by interval, while it runs (a thread reading /proc every
    `interval` seconds): what the stack's processes (`stack.cpu_snapshot()`), the `extra` processes (e.g. the
    simulated consoles: name -> a function returning their pids) and the whole box used, so a latency figure can
    be read against how busy the 2 cores were. `rows` once the `with` block is left: [the interval's middle (epoch
    seconds), {part: cores}], with "box" (every process and the kernel), "kernel" (of which system time), "steal"
    and "rest" (box minus the parts named: load generators, Redis, the kernel, other tenants)."""

    def __init__(self, stack: "Stack", extra: dict[str, Callable[[], list[int]]] | None = None,
                 interval: float = 0.5) -> None:
        self.stack, self.extra, self.interval = stack, extra or {}, interval
        self.rows: list[list[Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-timeline", daemon=True)

    def _snapshot(self) -> dict[str, float]:
        busy, kernel, steal = box_cpu()
        snap = {**self.stack.cpu_snapshot(), "box": busy, "kernel": kernel, "steal": steal}
        for name, pids in self.extra.items():
            snap[name] = sum(cpu_seconds(p) for p in pids())
        return snap

    def _run(self) -> None:
        before, at = self._snapshot(), time.time()
        while not self._stop.wait(self.interval):
            now_snap, now = self._snapshot(), time.time()
            span = max(now - at, 1e-3)
            cores = {k: max(0.0, (now_snap[k] - before[k]) / span) for k in now_snap}
            named = sum(v for k, v in cores.items() if k not in ("box", "kernel", "steal"))
            cores["rest"] = max(0.0, cores["box"] - named)
            self.rows.append([round((at + now) / 2, 3), {k: round(v, 3) for k, v in cores.items()}])
            before, at = now_snap, now

    def __enter__(self) -> "CpuTimeline":
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _postgres_cpu() -> float:
    """CPU seconds of every postgres process (shared server: an upper bound for our share)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(d.name))
            except OSError:
                pass
    return total


def delete_redis_prefix(prefix: str) -> int:
    """Delete every key of this run: ours start with the prefix; RQ's embed it (rq:queue:<prefix>ingest...);
    RQ job hashes (rq:job:<id>) are found through the registries that name them, or by their origin queue."""
    import redis
    r = redis.Redis.from_url(REDIS_URL)
    keys = set(r.scan_iter(match=f"*{prefix}*", count=1000))
    job_ids: set[bytes] = set()
    for key in keys:
        kind = r.type(key)
        if kind == b"zset":
            job_ids.update(r.zrange(key, 0, -1))
        elif kind == b"list":
            job_ids.update(r.lrange(key, 0, -1))
    # and the job hashes no registry names any more (a job enqueued by a process of the stack while it stopped, e.g.
    # a presence check after a socket's disconnect, was left behind): their origin is one of our queues
    for key in r.scan_iter(match="rq:job:*", count=1000):
        if r.type(key) == b"hash" and prefix.encode() in (r.hget(key, "origin") or b""):
            job_ids.add(key.split(b":")[2])
    for job_id in job_ids:
        keys.update(r.scan_iter(match=f"rq:job:{job_id.decode()}*"))
        keys.update(r.scan_iter(match=f"rq:results:{job_id.decode()}*"))
    deleted = 0
    for key in keys:
        deleted += r.delete(key)
    # RQ's global sets name every queue and worker ever registered: forget ours (as tests/procs.py does)
    for registry in ("rq:queues", "rq:workers"):
        ours = [member for member in r.smembers(registry) if prefix.encode() in member]
        if ours:
            r.srem(registry, *ours)
    r.close()
    return deleted


def child_on_fresh_database(root: Path, name: str, script: Path, args: list[str]) -> Any:
    """`python -P script --child *args` in checkout `root` (its cwd and PYTHONPATH) on a fresh PostgreSQL database,
    migrated and seeded (`bench.seed`) by that checkout's own code, with Redis under a key prefix of its own (the
    app's events published as in production); returns the JSON of the child's last line. The database and the
    Redis keys are deleted at the end (bench.drain_cost, bench.send_cost: one process, no web or worker)."""
    db_name = f"relais_{name}_{int(time.time() * 1000)}"
    prefix = f"relais-bench-{db_name}:"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    env = {"DATABASE_URL": f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{db_name}",
           "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix, "RELAIS_EMBEDDED_WORKER": "0",
           "SECRET_KEY": f"bench-{name}", "RELAIS_ENV": "test", "PYTHONPATH": str(root),
           "PATH": str(Path(PY).parent) + ":/usr/bin:/bin"}
    try:
        subprocess.run([ALEMBIC, "upgrade", "head"], cwd=root, env=env, check=True, capture_output=True)
        subprocess.run([PY, "-m", "bench.seed"], cwd=root, env=env, check=True, capture_output=True)
        out = subprocess.run([PY, "-P", str(script), "--child", *args], cwd=root, env=env, check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        delete_redis_prefix(prefix)
