"""Figure 2: live latency. `python -m bench.live_latency [--rate 200] [--seconds 10] [--plan "640:1,100,500"]`

Time from the webhook POST (request start, at the load generator) to the live event that shows the new message
at every connected agent (Node socket.io-client websocket connections with API-token auth, bench/agents.mjs, 250
per process), p50/p99, with 1, 100 and 500 connected agents of the brand at 200 msg/s open loop. Reference
measured in the same run: a bare Redis PUBLISH -> subscriber round trip at the same rate (bench.refs).

Two latencies, as a console gets them: the queue's (`conversation.created` / `conversation.updated` carrying the
message as its last-message preview, which every agent of the brand receives) and the open thread's
(`message.created`, which only the sockets watching that conversation receive: each agent opens about one
conversation in N, see bench/agents.mjs --watch-mod).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import timezone
from pathlib import Path
from typing import Any

from bench.common import (OUT, PY, REDIS_URL, ROOT, WORKERS, CpuTimeline, Stack, cpu_seconds, log, machine_info,
                          machine_line, ms, pct, run_procs, save_json, write_section)
from bench.ingest import RELAIS_COUNT, CountWatcher, load

NAME = "live_latency"
PER_PROCESS = 250
NODE = shutil.which("node") or "node"
# extra options for the agents' Node processes, e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to see
# where the simulated consoles' CPU goes (node refuses --cpu-prof in NODE_OPTIONS)
NODE_ARGS = os.environ.get("BENCH_NODE_ARGS", "").split()
# BENCH_CONSOLE_PARSE: "shared" (the default) lets the simulated consoles of one Node process decode each frame's
# text once for all of them, "each" makes every console decode its own copy (before 2026-11-25); see
# bench/agents.mjs --parse. The frames, their receive times and each console's handler are the same either way.
CONSOLE_PARSE = os.environ.get("BENCH_CONSOLE_PARSE", "shared")
# BENCH_CONSOLE_COUNTS=always: after a reconnect, every simulated console asks its counts again, as the console did
# before 2026-11-25 (figure 10's A/B); by default only one with no seq to replay from
CONSOLE_COUNTS = os.environ.get("BENCH_CONSOLE_COUNTS", "unreplayed")


def redis_reference(rate: float, count: int) -> dict[str, Any]:
    channel = f"relais-bench-ref-{time.time_ns()}"
    out = OUT / "ref-redis.json"
    sub = subprocess.Popen([PY, "-m", "bench.refs", "redis-sub", "--redis-url", REDIS_URL, "--channel", channel,
                            "--count", str(count), "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    sub.stdout.readline()  # READY
    run_procs([[PY, "-m", "bench.refs", "redis-pub", "--redis-url", REDIS_URL, "--channel", channel,
                "--count", str(count), "--rate", str(rate)]])
    sub.wait(60)
    data = json.loads(out.read_text())
    lat = data["latencies"]
    return {"count": count, "received": data["received"], "p50": pct(lat, 50), "p99": pct(lat, 99),
            "max": max(lat) if lat else None}


class Agents:
    """`tokens` agent consoles as Node socket.io-client connections (bench/agents.mjs), `per` per process; process
    k connects to urls[k % len(urls)] (sticky, as a load balancer would do).

    Use as a context manager (or call `stop()`): entering connects them all (`connected`), leaving stops the
    processes and reads what they received: `events` = [client, event, external_id, seq, recv epoch s, data.t],
    `frames`, `connected_at_end`."""

    def __init__(self, urls: str | list[str], tokens: list[str], tag: str,
                 events: str = "conversation.created,conversation.updated,message.created",
                 per: int = PER_PROCESS, watch_mod: int = 0, drop_for: float = 0.0, drop_spread: float = 1.0):
        self.urls = [urls] if isinstance(urls, str) else urls
        self.drop_args = ["--drop-for", str(drop_for), "--drop-spread", str(drop_spread)] if drop_for > 0 else []
        self.reconnects: list[list[Any]] = []  # agents.mjs --drop-for: one row per reconnect
        self.replayed_events = self.requests = 0
        self.tokens, self.tag, self.event_names, self.per = tokens, tag, events, per
        self.watch_mod = watch_mod
        self.watches = 0
        self.procs: list[subprocess.Popen] = []
        self.outs: list[Path] = []
        self.connected = self.connected_at_end = self.frames = 0
        self.events: list[list[Any]] = []
        self.stalls: list[dict[str, Any]] = []  # per process: its GC pauses and event-loop delay (agents.mjs)

    def __enter__(self) -> "Agents":
        for k, start in enumerate(range(0, len(self.tokens), self.per)):
            tokens_file, out = OUT / f"{self.tag}-tokens-{k}.txt", OUT / f"{self.tag}-agents-{k}.json"
            tokens_file.write_text("\n".join(self.tokens[start:start + self.per]))
            self.outs.append(out)
            self.procs.append(subprocess.Popen([NODE, *NODE_ARGS, str(ROOT / "bench" / "agents.mjs"),
                                                "--url", self.urls[k % len(self.urls)],
                                                "--tokens-file", str(tokens_file), "--out", str(out),
                                                "--events", self.event_names,
                                                "--watch-mod", str(self.watch_mod), "--first-index", str(start),
                                                "--parse", CONSOLE_PARSE, "--counts", CONSOLE_COUNTS,
                                                *self.drop_args],
                                               cwd=ROOT, stdout=subprocess.PIPE, text=True))
        for p in self.procs:
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith("READY"):
                    self.connected += int(line.split()[1])
                    break
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    def replays_ended(self) -> tuple[int, int]:
        """(consoles dropped, consoles caught up) so far, from agents.mjs' status files (--drop-for): caught up, a
        whole replay ended or an incomplete one's requests (list, conversation, thread) answered."""
        dropped = replayed = 0
        for out in self.outs:
            try:
                status = json.loads(Path(f"{out}.status").read_text())
            except (OSError, ValueError):
                continue
            dropped += status["dropped"]
            replayed += status["replayed"]
        return dropped, replayed

    def drop(self) -> None:
        """Every console drops its connection now and reconnects after the `drop_for` given (agents.mjs)."""
        assert self.drop_args, "Agents(drop_for=...) drops"
        for p in self.procs:
            p.send_signal(signal.SIGUSR2)

    def stop(self) -> dict[str, Any]:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for k, (p, out) in enumerate(zip(self.procs, self.outs)):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            (OUT / f"{self.tag}-tokens-{k}.txt").unlink(missing_ok=True)
            Path(f"{out}.status").unlink(missing_ok=True)
            if out.exists():
                data = json.loads(out.read_text())
                out.unlink()
                self.connected_at_end += data["connected_at_end"]
                self.frames += data["frames"]
                self.watches += data.get("watches", 0)
                self.stalls.append({"gc": data.get("gc"), "loop_delay_ms": data.get("loop_delay_ms"),
                                    "late_by_second": data.get("late_by_second") or {},
                                    "parse": data.get("parse"), "decode": data.get("decode")})
                self.events.extend(data["events"])
                self.reconnects.extend(data.get("reconnects") or [])
                self.replayed_events += data.get("replayed_events", 0)
                self.requests += data.get("requests", 0)
        self.procs, self.outs = [], []
        return {"events": self.events, "connected_at_end": self.connected_at_end, "frames": self.frames}


# BENCH_WARMUP_S: seconds of other customers' messages at the same rate before the measured ones (0, the default:
# none, the figure starts cold). The simulated consoles are Node processes started for the run: in their first
# seconds V8 has not optimised the code that reads the frames, and their event loop ran 60-254 ms late
# (2026-11-25 01:05-01:08, 500 agents), most of the figure's p99 then (239 / 262 ms cold, 71 / 118 ms after 2 s of
# other customers, alternated). The measured messages still come from customers the stack has never seen (each
# opens a conversation, a contact, a name lookup). With a warm-up, an agent watching every conversation (1 agent)
# has filled its WATCH_MAX slots with warm-up conversations: no thread events are measured there.
WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "0") or 0)
# runs of each stack's largest agent count (`--repeat`): on 2 shared cores the 500-agent p50 moved 17.6-33.1 ms and
# its p99 69.3-164.1 ms over 14 runs of one checkout in an hour (2026-11-25), so one run is not the figure
REPEAT = 3


def run_agents(stack: Stack, n_agents: int, rate: float, seconds: float, webhook_url: str,
               tag: str = "") -> dict[str, Any]:
    prefix = f"l{n_agents}x{tag}"
    count = int(rate * seconds)
    with Agents(stack.base_url, stack.world["agent_tokens"][:n_agents], f"{NAME}-{n_agents}",
                watch_mod=n_agents) as agents:
        log(f"{agents.connected}/{n_agents} agents connected")
        time.sleep(1.0)
        if WARMUP_S > 0:  # other customers' messages first: the consoles (and the stack) warmed, then measured
            warm = int(rate * WARMUP_S)
            warming = CountWatcher(stack, RELAIS_COUNT, "w" + prefix, warm, timeout=120)
            load(webhook_url + "/webhooks/meta", prefix="w" + prefix, count=warm, rate=rate, procs=1, threads=32)
            warming.wait()
            time.sleep(2.0)
        cpu0 = {**stack.cpu_snapshot(), "agents": sum(cpu_seconds(p.pid) for p in agents.procs)}
        watcher = CountWatcher(stack, RELAIS_COUNT, prefix, count, timeout=120)
        with CpuTimeline(stack, {"agents": lambda: [p.pid for p in agents.procs]}) as timeline:
            result = load(webhook_url + "/webhooks/meta", prefix=prefix, count=count, rate=rate, procs=1,
                          threads=32)
            watcher.wait()
            time.sleep(3.0)  # the last events on their way to the clients
        cpu1 = {**stack.cpu_snapshot(), "agents": sum(cpu_seconds(p.pid) for p in agents.procs)}
    figures = collect(result, agents, prefix, n_agents=n_agents, rate=rate, count=count)
    figures["stages"] = stages(stack, result, agents, prefix)
    figures["cpu_ms_per_msg"] = {k: round((cpu1[k] - cpu0[k]) * 1000 / count, 3) for k in cpu0}
    figures["cores_by_second"] = cores_by_second(timeline.rows, result)
    return figures


def cores_by_second(rows: list[list[Any]], result: dict[str, Any]) -> list[dict[str, float]]:
    """The CPU timeline's intervals averaged per second of the load, second 0 starting at the first POST (as
    the latency by the second), up to the second after the last POST: the cores each part and the whole box
    used while the messages were sent."""
    posted = [r[2] for r in result["rows"]]
    if not posted or not rows:
        return []
    start, end = min(posted), max(posted)
    seconds: dict[int, list[dict[str, float]]] = {}
    for at, cores in rows:
        if start <= at <= end + 1.0:
            seconds.setdefault(int(at - start), []).append(cores)
    return [{"second": s} | {k: round(sum(c[k] for c in values) / len(values), 2) for k in values[0]}
            for s, values in sorted(seconds.items())]


LIST_EVENTS = ("conversation.created", "conversation.updated")
# The first seconds of a run are its start-up: with 200 customers per load process, the first 200 messages each
# open a new conversation (a contact, its identity, a profile lookup, `conversation.created`) and its watching
# agent asks to `watch` it at once, and the backlog this leaves takes a little longer to clear. The figure is the
# whole run; "steady" is the messages sent from this many seconds on, reported beside it.
STEADY_AFTER_S = 2


def collect(result: dict[str, Any], agents: Agents, prefix: str, *, n_agents: int, rate: float,
            count: int) -> dict[str, Any]:
    """Latency from each acked webhook POST to each agent's first live event showing that message: in the queue
    (a conversation event whose last-message preview is it) and in the open thread (its message.created, at the
    agents watching that conversation); with the ack latencies and the frames the agents received."""
    sent = {f"{prefix}p0-{int(r[0])}": r[2] for r in result["rows"] if r[4] == 200}  # one loadgen process
    first_list: dict[tuple[int, str], float] = {}
    thread: list[float] = []
    for client, event, key, _seq, received, _t in agents.events:
        if key not in sent:
            continue
        if event in LIST_EVENTS:
            first_list[(client, key)] = min(received, first_list.get((client, key), received))
        elif event == "message.created":
            thread.append(received - sent[key])
    latencies = [received - sent[key] for (_client, key), received in first_list.items()]
    # the pipeline without the fan-out (each message's first agent), and the fan-out's own spread (each delivery
    # after that message's first one): which of the two grows with the agents
    first_agent: dict[str, float] = {}
    for (_client, key), received in first_list.items():
        first_agent[key] = min(received, first_agent.get(key, received))
    spread = [received - first_agent[key] for (_client, key), received in first_list.items()]
    pipeline = [first_agent[key] - sent[key] for key in first_agent]
    start = min(sent.values(), default=0.0)
    by_second: dict[int, list[float]] = {}
    for (_client, key), received in first_list.items():
        by_second.setdefault(int(sent[key] - start), []).append(received - sent[key])
    steady = [v for second, values in by_second.items() if second >= STEADY_AFTER_S for v in values]
    ack = [r[3] - r[1] for r in result["rows"]]
    return {"agents": n_agents, "connected": agents.connected, "connected_at_end": agents.connected_at_end,
            "rate": rate, "messages": count, "acked": len(sent), "statuses": result["statuses"],
            "expected_deliveries": len(sent) * agents.connected, "delivered": len(latencies),
            "frames": agents.frames, "p50": pct(latencies, 50), "p99": pct(latencies, 99),
            "max": max(latencies) if latencies else None, "ack_p50": pct(ack, 50), "ack_p99": pct(ack, 99),
            "watches": agents.watches, "thread_delivered": len(thread), "thread_p50": pct(thread, 50),
            "thread_p99": pct(thread, 99), "thread_max": max(thread) if thread else None,
            "steady_p50": pct(steady, 50), "steady_p99": pct(steady, 99),
            "first_agent_p50": pct(pipeline, 50), "first_agent_p99": pct(pipeline, 99),
            "spread_p50": pct(spread, 50), "spread_p99": pct(spread, 99),
            "timeline": [[second, len(values), pct(values, 50), pct(values, 99)]
                         for second, values in sorted(by_second.items())],
            # the consoles' event loop: the longest it ran late in each second of the timeline (any process), ms
            "consoles_late": [max((s["late_by_second"].get(str(int(start) + second), 0) for s in agents.stalls),
                                  default=None) for second, _values in sorted(by_second.items())],
            # how the consoles decoded their frames (bench/agents.mjs --parse): frames decoded, and frames given the
            # decoded copy of an identical frame another console of the same process received
            "console_parse": agents.stalls[0].get("parse") if agents.stalls else None,
            "console_decode": {k: sum((s.get("decode") or {}).get(k, 0) for s in agents.stalls)
                               for k in ("decoded", "shared")},
            "client_stalls": {
                "gc_max_ms": max((s["gc"]["max_ms"] for s in agents.stalls if s.get("gc")), default=None),
                "gc_total_ms": sum(s["gc"]["total_ms"] for s in agents.stalls if s.get("gc")),
                "loop_delay_p99_ms": max((s["loop_delay_ms"]["p99"] for s in agents.stalls
                                          if s.get("loop_delay_ms")), default=None),
                "loop_delay_max_ms": max((s["loop_delay_ms"]["max"] for s in agents.stalls
                                          if s.get("loop_delay_ms")), default=None)}}


BENCH_MID = re.compile(rb'"mid":"([^"]+)"')
BENCH_TEXT = re.compile(r"^bench message (\d+) from (.*)-c\d+$")  # as bench/agents.mjs reads a preview


def _epoch(at: Any) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


# the steps of `stages`, in order; before 2026-11-24 21:30 a run had "drain started" (ack -> batch applied) where
# these have "claimed" and "applied"
STAGES = ("stored", "acked", "claimed", "applied", "event built", "first agent")
OLD_STAGES = ("stored", "acked", "drain started", "event built", "first agent")


def stages(stack: Stack, result: dict[str, Any], agents: Agents, prefix: str) -> dict[str, Any]:
    """Where each message's time to its first agent goes, from the stack's own timestamps (p50 / p99 in seconds
    of each step, over the messages of the run): POST started -> stored (`webhook_events.received_at`, the web
    has read and verified it) -> acked (the load generator has the 200: the group commit) -> claimed by a drain
    (the message's `received_at`, taken just after the drain's claim: the nudge, the linger, the previous drain)
    -> its batch applied (`webhook_events.processed_at`: contacts, conversations locked, messages inserted) -> its
    conversation event built (`realtime_events.created_at`) -> the first agent has it (the commit, the publish,
    the relay, the websocket write and the Node client)."""
    rows = {f"{prefix}p0-{int(r[0])}": r for r in result["rows"] if r[4] == 200}
    stored: dict[str, tuple[float, float]] = {}
    for body, received_at, processed_at in stack.sql(
            "SELECT body, received_at, processed_at FROM webhook_events WHERE processed_at IS NOT NULL"):
        m = BENCH_MID.search(bytes(body))
        if m and m.group(1).decode() in rows:
            stored[m.group(1).decode()] = (_epoch(received_at), _epoch(processed_at))
    claimed = {external_id: _epoch(received_at) for external_id, received_at in stack.sql(
        "SELECT external_id, received_at FROM messages WHERE external_id = ANY(%s)", list(rows))}
    built: dict[str, float] = {}
    for text, created_at in stack.sql(
            "SELECT payload->'last_message'->>'text', created_at FROM realtime_events "
            "WHERE name IN ('conversation.created', 'conversation.updated')"):
        m = BENCH_TEXT.match(text or "")
        if m:
            key = f"{m.group(2)}-{m.group(1)}"
            built[key] = min(_epoch(created_at), built.get(key, _epoch(created_at)))
    first: dict[str, float] = {}
    for _client, event, key, _seq, received, _t in agents.events:
        if event in LIST_EVENTS and key in rows:
            first[key] = min(received, first.get(key, received))
    steps: dict[str, list[float]] = {name: [] for name in STAGES}
    startup: dict[str, list[float]] = {name: [] for name in STAGES}  # the messages sent before STEADY_AFTER_S
    start = min((r[2] for r in rows.values()), default=0.0)
    for key, r in rows.items():
        if key not in stored or key not in claimed or key not in built or key not in first:
            continue
        received_at, processed_at = stored[key]
        for target in (steps, startup) if r[2] - start < STEADY_AFTER_S else (steps,):
            target["stored"].append(received_at - r[2])
            target["acked"].append(r[3] - received_at)
            target["claimed"].append(claimed[key] - r[3])
            target["applied"].append(processed_at - claimed[key])
            target["event built"].append(built[key] - processed_at)
            target["first agent"].append(first[key] - built[key])
    return {name: [pct(v, 50), pct(v, 99)] for name, v in steps.items()} | {"messages": len(steps["stored"])} \
        | {"startup": {name: [pct(v, 50), pct(v, 99)] for name, v in startup.items()}
           | {"messages": len(startup["stored"])}}


def run(rate: float = 200.0, seconds: float = 10.0, agent_counts: tuple[int, ...] = (1, 100, 500),
        threads: int = 640, profile: bool = False, split: bool = False,
        worker_class: str = "gevent", rq_workers: int = WORKERS, root: Path = ROOT,
        save: bool = True, repeat: int = 1) -> dict[str, Any]:
    """One fresh stack running the app in `root` (bench.ab's baseline; this checkout by default), the agent counts
    in turn. With `profile`, the web worker runs under yappi (slower: a
    separate run whose latencies are not the figure) and its CPU summary is kept. With `split`, webhooks go to a
    second web process (the same worker class) and the agents' sockets to the first: the production layout README
    describes, where acks never queue behind live fan-out. With `repeat` > 1, the largest agent count runs that many
    times in all on the same stack (new agents' processes and new customers each time; the stack warm after the
    first): `runs` keeps the first, `repeats` the others, so a noisy box's spread is in the figure."""
    info = machine_info()
    results: dict[str, Any] = {"machine": info, "rate": rate, "seconds": seconds, "threads": threads, "runs": [],
                               "warmup_s": WARMUP_S,
                               "profiled": profile, "split": split, "worker_class": worker_class,
                               "rq_workers": rq_workers, "repeats": []}
    yappi_out = OUT / f"{NAME}-web-yappi.json"
    yappi_flag = Path(str(yappi_out) + ".dump")
    yappi_out.unlink(missing_ok=True)
    yappi_flag.unlink(missing_ok=True)
    with Stack(workers=rq_workers, agents=max(agent_counts), threads=threads, label=NAME, worker_class=worker_class,
               web_profile=str(yappi_out) if profile else "", root=root) as stack:
        webhook_url = stack.add_web("web-hooks", 64) if split else stack.base_url
        load(webhook_url + "/webhooks/meta", prefix="lw", count=100, procs=1)  # warm-up
        results["ref_redis"] = redis_reference(rate, int(rate * seconds))
        log(f"ref redis pub/sub: p50 {ms(results['ref_redis']['p50'])} p99 {ms(results['ref_redis']['p99'])}")
        for n in agent_counts:
            r = run_agents(stack, n, rate, seconds, webhook_url)
            results["runs"].append(r)
            if profile and n == agent_counts[-1]:  # ask the live worker to write (a worker with hundreds of
                # threads can be killed before its graceful exit ends)
                yappi_flag.touch()
                deadline = time.time() + 180
                while not yappi_out.exists() and time.time() < deadline:
                    time.sleep(1.0)
                yappi_flag.unlink(missing_ok=True)
            log(f"{n} agents: queue p50 {ms(r['p50'])} p99 {ms(r['p99'])}, delivered {r['delivered']}/"
                f"{r['expected_deliveries']}; thread {r['thread_delivered']} p50 {ms(r['thread_p50'])} "
                f"p99 {ms(r['thread_p99'])}; ack p99 {ms(r['ack_p99'])}")
        for k in range(2, (1 if profile else repeat) + 1):  # the largest count again, on the same stack
            r = run_agents(stack, max(agent_counts), rate, seconds, webhook_url, tag=f"r{k}")
            results["repeats"].append(r)
            log(f"{max(agent_counts)} agents, run {k} of {repeat}: queue p50 {ms(r['p50'])} p99 {ms(r['p99'])}, "
                f"delivered {r['delivered']}/{r['expected_deliveries']}")
    if profile and yappi_out.exists():  # written by the web worker as the stack stopped
        results["web_profile"] = json.loads(yappi_out.read_text())
    if save:
        save_json(f"{NAME}-{rate:g}{'-profiled' if profile else ''}{'-split' if split else ''}"
                  f"{'-gthread' if worker_class == 'gthread' else ''}-{rq_workers}rq", results)
    return results


KEY_PATHS = [  # (label, a substring of yappi's "module:line name")
    ("HTTP requests (webhooks, API, the websocket handshakes), `ThreadWorker.handle_request`", "handle_request"),
    ("webhook POSTs (before Flask), `meta_post`", " meta_post"),
    ("live relay: one delivery round, `Relay.deliver`", "Relay.deliver"),
    ("of which Socket.IO emit to the room's sockets, `Manager.emit`", "Manager.emit"),
    ("of which frames written to the websockets directly (gevent), `Writer.emit`", "Writer.emit"),
    ("engine.io per-socket writer threads, `writer`", " writer"),
    ("engine.io `Socket.poll`: each socket's writer thread waiting for and taking its frames (a thread wake-up per socket per frame)", " Socket.poll"),
    ("websocket frames written, `simple_websocket` `Server.send`", "ws.py:70 Server.send"),
    ("of which permessage-deflate, `PerMessageDeflate.frame_outbound`", "PerMessageDeflate.frame_outbound"),
    ("socket connects (token, rooms, presence), `on_connect`", " on_connect"),
]


def profile_lines(prof: dict[str, Any], agents: int, rate: float) -> list[str]:
    """Where the web worker's CPU went (yappi, every thread) during a profiled run."""
    total = prof["cpu_s"] or 1.0
    contexts = prof.get("contexts", "threads")  # gevent: yappi's contexts are the greenlets
    lines = ["", f"### Where the web worker's CPU goes ({agents} agents, {rate:g} msg/s; yappi, CPU clock, every "
             f"{contexts[:-1]}; a separate run, slowed by the profiler)", "",
             f"{prof['cpu_s']:.1f} CPU seconds in all. By {contexts[:-1]} kind:", "",
             f"| {contexts[:-1]} kind | {contexts} | CPU s | share |", "|---|---|---|---|"]
    for kind, v in sorted(prof["threads"].items(), key=lambda kv: -kv[1]["cpu_s"])[:8]:
        lines.append(f"| `{kind}` | {v['threads']} | {v['cpu_s']:.2f} | {v['cpu_s'] / total:.0%} |")
    lines += ["", "Main paths (inclusive CPU):", "", "| path | CPU s | share | calls |", "|---|---|---|---|"]
    for label, pattern in KEY_PATHS:
        found = [f for f in prof["inclusive_all"] if pattern in f[3]] if "inclusive_all" in prof else \
            [f for f in prof["inclusive"] if pattern in f[3]]
        if found:
            ttot, _tsub, ncall, _name = max(found)
            lines.append(f"| {label} | {ttot:.2f} | {ttot / total:.0%} | {ncall:,} |")
    lines += ["", "Functions with the most own CPU:", "", "| function | own CPU s | share | calls |", "|---|---|---|---|"]
    for _ttot, tsub, ncall, name in prof["own"][:15]:
        lines.append(f"| `{name}` | {tsub:.2f} | {tsub / total:.0%} | {ncall:,} |")
    return lines


def cores_lines(timelines: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """How busy the box was in each second of the runs of the latency-by-the-second table (`CpuTimeline`)."""
    timed = [(res, r) for res, r in timelines if r.get("cores_by_second")]
    if not timed:
        return []
    width = max(len(r["cores_by_second"]) for _res, r in timed)
    lines = ["", "Cores in use in the same seconds (/proc, every 0.5 s; the box has 2): the whole box, with in "
             "brackets its system time (every process's system calls and interrupts: also counted in each part "
             "below) and the hypervisor's steal; then the simulated consoles / the web process / the RQ workers / "
             "every PostgreSQL process / the rest (the load generator, Redis, the kernel's own threads, other "
             "tenants). A box near 2.0 has no core to spare: every part waits for the CPU, and the latencies above "
             "grow with that wait.", "",
             "| run | " + " | ".join(f"s{t}" for t in range(width)) + " |", "|---|" + "---|" * width]
    for res, r in timed:
        by = r["cores_by_second"]
        note = f", {res['note']}" if res.get("note") else ""
        label = f"{r['agents']} agents, {r['rate']:g} msg/s, {res.get('rq_workers', 2)} RQ{note}"
        lines.append(f"| {label}: box (kernel, steal) | "
                     + " | ".join(f"{c['box']:.2f} ({c['kernel']:.2f}, {c['steal']:.2f})" for c in by) + " |")
        lines.append(f"| {label}: consoles / web / workers / PostgreSQL / rest | "
                     + " | ".join(f"{c.get('agents', 0):.2f} / {c['web']:.2f} / {c['workers']:.2f} / "
                                  f"{c['postgres_total']:.2f} / {c['rest']:.2f}" for c in by) + " |")
    return lines


def _parse_words(res: dict[str, Any]) -> str:
    """How the run's simulated consoles decoded their frames (bench/agents.mjs --parse)."""
    mode = next((r.get("console_parse") for r in res.get("runs", []) if r.get("console_parse")), None)
    if mode == "shared":
        return ("the consoles of one process decoding a frame's text once for all of them (`--parse shared`: "
                "each still receives its own frame and runs its own handler, where the receive time is taken)")
    if mode == "each":
        return "each console decoding its own copy of every frame (`--parse each`)"
    return "each console decoding its own copy of every frame (runs before 2026-11-25)"


def report(all_results: list[dict[str, Any]]) -> str:
    first = all_results[0]
    ref = first["ref_redis"]
    rates = " and ".join(f"{r:g}" for r in sorted({res["rate"] for res in all_results}, reverse=True))
    lines = ["## 2. Live latency (webhook POST -> the event showing the message at the agents)", "",
             machine_line(first["machine"]),
             "", f"Open loop at {rates} msg/s, {first['seconds']:g} s each, single-entry signed Meta webhooks "
             "from one load-generator process"
             + (f", after {first['warmup_s']:g} s of other customers' messages at the same rate (not measured: the "
                "simulated consoles' code and the stack warmed; every measured message still comes from a customer "
                "the stack has not seen: `BENCH_WARMUP_S`, 0 for a cold start)" if first.get("warmup_s") else "")
             + "; every agent is in the brand's team, so each agent's queue shows every "
             "message (the worst case). **queue**: the first `conversation.created` / `conversation.updated` whose "
             "last-message preview is the message, at every agent (deliveries counted per agent and message; a "
             "conversation event covers the latest message of its batch, so a message followed at once by another "
             "of the same customer may be shown only through the later one). **thread**: `message.created` at the "
             "agents that have the conversation open (each agent opens about one new conversation in N: "
             "bench/agents.mjs --watch-mod). Agents are socket.io-client websocket connections (the console's "
             f"library) in Node processes of {PER_PROCESS}, API-token auth, "
             + _parse_words(first) + "; 1 gunicorn web process (its worker "
             "class and the number of RQ worker processes in the second column). Events reach sockets through the "
             "relay (inbox/realtime/relay.py): one Redis message per "
             "commit, one `events` frame per room set per delivery round.", "",
             "| run | web worker | agents connected (end) | queue deliveries | frames per agent per s | queue p50 | "
             f"queue p99 | max | steady, from {STEADY_AFTER_S} s: p50 / p99 | ratio p50 / p99 to Redis ref | thread "
             "events (p50 / p99) | ack p99 | CPU ms per message (web / workers / PostgreSQL / agent clients) | agents' "
             "own stalls: GC max / event loop late p99, max |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| reference: bare Redis PUBLISH -> subscriber | | 1 | {ref['received']}/{ref['count']} | | "
             f"{ms(ref['p50'])} | {ms(ref['p99'])} | {ms(ref['max'])} | | 1 / 1 | | | | |"]
    for res in all_results:
        ref = res["ref_redis"]
        for r in res["runs"]:
            ratio = (f"{r['p50'] / ref['p50']:.0f}x / {r['p99'] / ref['p99']:.0f}x"
                     if r["p50"] and ref["p50"] else "n/a")
            fps = r["frames"] / max(1, r["connected"]) / res["seconds"]
            cpu = r.get("cpu_ms_per_msg", {})
            label = (f"{r['agents']} agent(s), {r['rate']:g} msg/s, web under yappi (not the figure)"
                     if res.get("profiled") else f"**{r['agents']} agent(s), {r['rate']:g} msg/s**")
            if res.get("split"):
                label += ", webhooks on their own web process"
            if res.get("note"):
                label += f" ({res['note']})"
            thread = (f"{r['thread_delivered']} ({ms(r['thread_p50'])} / {ms(r['thread_p99'])})"
                      if "thread_delivered" in r else "(every agent got every message.created: the old protocol)")
            worker = (f"gthread x{res['threads']}" if res.get("worker_class", "gthread") == "gthread"
                      else res["worker_class"]) + f" + {res.get('rq_workers', 2)} RQ"
            steady = (f"{ms(r['steady_p50'])} / {ms(r['steady_p99'])}" if r.get("steady_p50") is not None
                      else "n/a")
            stalls = r.get("client_stalls") or {}
            stall = (f"{stalls['gc_max_ms']:.0f} / {stalls['loop_delay_p99_ms']:.0f}, "
                     f"{stalls['loop_delay_max_ms']:.0f} ms" if stalls.get("gc_max_ms") is not None
                     and stalls.get("loop_delay_p99_ms") is not None else "n/a")
            lines.append(f"| {label} | {worker} | {r['connected']} "
                         f"({r['connected_at_end']}) | {r['delivered']}/{r['expected_deliveries']} | {fps:.1f} | "
                         f"**{ms(r['p50'])}** | **{ms(r['p99'])}** | {ms(r['max'])} | {steady} | {ratio} | {thread} | "
                         f"{ms(r['ack_p99'])} | "
                         f"{cpu.get('web', 'n/a')} / {cpu.get('workers', 'n/a')} / {cpu.get('postgres_total', 'n/a')} "
                         f"/ {cpu.get('agents', 'n/a')} | {stall} |")
    repeated = [res for res in all_results if res.get("repeats")]
    if repeated:
        lines += ["", "The largest agent count of each stack, run again on the same stack (`--repeat`: new agent "
                  "processes and new customers each time; the first run is the row above, the others found the "
                  "server warm). A shared box moves from one run to the next: the spread is part of the figure.", "",
                  "| stack | run | queue p50 | queue p99 | steady p50 / p99 | s0 p50 / p99 | CPU ms per message (web / "
                  "workers / PostgreSQL / agent clients) |",
                  "|---|---|---|---|---|---|---|"]
        for res in repeated:
            first_run = max(res["runs"], key=lambda r: r["agents"])
            every = [first_run, *res["repeats"]]
            stack = (f"{first_run['agents']} agents, {res['rate']:g} msg/s, {res.get('worker_class', 'gthread')} + "
                     f"{res.get('rq_workers', 2)} RQ")
            for k, r in enumerate(every, 1):
                cpu = r.get("cpu_ms_per_msg", {})
                s0 = r["timeline"][0] if r.get("timeline") else None
                lines.append(f"| {stack} | {k}{' (the row above)' if k == 1 else ''} | {ms(r['p50'])} | "
                             f"{ms(r['p99'])} | {ms(r.get('steady_p50'))} / {ms(r.get('steady_p99'))} | "
                             + (f"{ms(s0[2])} / {ms(s0[3])}" if s0 else "n/a") + " | "
                             f"{cpu.get('web', 'n/a')} / {cpu.get('workers', 'n/a')} / "
                             f"{cpu.get('postgres_total', 'n/a')} / {cpu.get('agents', 'n/a')} |")
            p50s = sorted(r["p50"] for r in every if r.get("p50") is not None)
            p99s = sorted(r["p99"] for r in every if r.get("p99") is not None)
            if p50s and p99s:
                lines.append(f"| {stack} | **all {len(every)}: median (min - max)** | "
                             f"**{ms(p50s[len(p50s) // 2])}** ({ms(p50s[0])} - {ms(p50s[-1])}) | "
                             f"**{ms(p99s[len(p99s) // 2])}** ({ms(p99s[0])} - {ms(p99s[-1])}) | "
                             f"p50 < 30 ms in {sum(v < 0.030 for v in p50s)} of {len(p50s)}, p99 < 150 ms in "
                             f"{sum(v < 0.150 for v in p99s)} of {len(p99s)} | | |")
    timelines = [(res, r) for res in all_results for r in res["runs"] if r.get("timeline")
                 and r["agents"] == max(x["agents"] for x in res["runs"]) and not res.get("profiled")]
    if timelines:
        lines += ["", "Queue latency by the second the message was sent (largest agent count of each stack): the "
                  f"start-up, then the steady state (\"steady\" above counts from second {STEADY_AFTER_S}).", "",
                  "| run | " + " | ".join(f"s{t}" for t in range(max(len(r["timeline"]) for _res, r in timelines)))
                  + " |",
                  "|---|" + "---|" * max(len(r["timeline"]) for _res, r in timelines)]
        for res, r in timelines:
            cells = [f"{ms(p50)} / {ms(p99)}" for _second, _n, p50, p99 in r["timeline"]]
            note = f", {res['note']}" if res.get("note") else ""
            lines.append(f"| {r['agents']} agents, {r['rate']:g} msg/s, {res.get('rq_workers', 2)} RQ{note} "
                         "(p50 / p99) | " + " | ".join(cells) + " |")
            if r.get("consoles_late"):
                lines.append("| the same: the simulated consoles' event loop late by at most (ms; a frame that "
                             "arrives meanwhile waits) | " + " | ".join(str(v) for v in r["consoles_late"]) + " |")
        lines += cores_lines(timelines)
    staged = [(res, r) for res in all_results for r in res["runs"] if r.get("stages") and not res.get("profiled")]
    if staged:
        lines += ["", "Where each message's time to its first agent goes (p50 / p99 of each step, from the stack's own "
                  "timestamps: `webhook_events.received_at` and `processed_at`, the message's `received_at` (taken "
                  "as its drain claimed it), `realtime_events.created_at`), then "
                  "the fan-out's spread from that first agent to each of the others. A step's p50s do not add up to "
                  "the figure's p50 (each is the median of its own step).", "",
                  "| run | POST -> stored (read, verified) | -> acked (group commit) | -> claimed by a drain (nudge, "
                  "linger, the previous drain) | -> its batch applied (contacts, conversations locked, messages "
                  "inserted) | -> its event built | -> first agent (commit, publish, relay, write, Node) | first "
                  "agent p50 / p99 | spread to the others p50 / p99 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for res, r in staged:
            st = r["stages"]
            names = STAGES if "claimed" in st else OLD_STAGES  # an older run: ack -> batch applied in one step
            cells = [f"{ms(st[name][0])} / {ms(st[name][1])}" for name in names]
            if names is OLD_STAGES:
                cells[2:3] = [f"{cells[2]} (with the next step)", "-"]
            note = ", webhooks on their own web process" if res.get("split") else ""
            lines.append(f"| {r['agents']} agents, {r['rate']:g} msg/s, {res.get('rq_workers', 2)} RQ{note} | "
                         + " | ".join(cells) + f" | {ms(r['first_agent_p50'])} / {ms(r['first_agent_p99'])} | "
                         f"{ms(r['spread_p50'])} / {ms(r['spread_p99'])} |")
            early = st.get("startup")
            if early and early.get("messages") and r["agents"] == max(x["agents"] for x in res["runs"]):
                lines.append(f"| the same, its first {STEADY_AFTER_S} s only ({early['messages']} messages) | "
                             + " | ".join(f"{ms(early[name][0])} / {ms(early[name][1])}" for name in STAGES)
                             + " | | |")
    for res in all_results:
        if res.get("web_profile"):
            lines += profile_lines(res["web_profile"], max(r["agents"] for r in res["runs"]), res["rate"])
    lines += ["", "Raw data: `bench/out/live_latency*.json`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", default="200", help="msg/s; several comma-separated: one stack per rate")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--plan", default="640:1,100,500",
                        help="gunicorn threads:agent counts, ';' between stacks (each stack is fresh)")
    parser.add_argument("--worker", default="gevent",
                        help="gunicorn worker class of the web processes: gevent (the README's production web "
                             "worker) or gthread (threads from --plan); several comma-separated: each in turn")
    parser.add_argument("--rq-workers", default=str(WORKERS),
                        help="RQ worker processes of the stacks; several comma-separated: each in turn")
    parser.add_argument("--repeat", type=int, default=REPEAT,
                        help="runs of each stack's largest agent count on that stack (the figure's spread)")
    parser.add_argument("--profile", action="store_true",
                        help="then one more stack at the largest agent count with the web worker under yappi")
    parser.add_argument("--split", action="store_true",
                        help="also every stack again with webhooks on a second web process")
    parser.add_argument("--profile-only", action="store_true", help="only the profiled stack (then --report-only)")
    parser.add_argument("--report-only", metavar="JSON,...",
                        help="rewrite the section from saved bench/out/live_latency-*.json results, in this order")
    args = parser.parse_args()
    if args.report_only:
        write_section(NAME, report([json.loads((OUT / name).read_text()) for name in args.report_only.split(",")]))
        return
    rates = [float(r) for r in args.rate.split(",")]
    if args.profile_only:
        threads, counts = args.plan.split(";")[-1].split(":")
        run(rates[0], args.seconds, (max(int(c) for c in counts.split(",")),), int(threads), profile=True,
            worker_class=args.worker.split(",")[0])
        return
    run_plan(rates, args.seconds, args.plan, args.profile, args.split, args.worker.split(","),
             [int(n) for n in args.rq_workers.split(",")], repeat=args.repeat)


def run_plan(rates: float | list[float] = 200.0, seconds: float = 10.0, plan: str = "640:1,100,500",
             profile: bool = False, split: bool = False,
             workers: tuple[str, ...] | list[str] = ("gevent",),
             rq_workers: tuple[int, ...] | list[int] = (WORKERS,), repeat: int = REPEAT) -> list[dict[str, Any]]:
    """Every stack of `plan` at every rate, its largest agent count `repeat` times; with `profile`, one more stack
    at the first rate and the largest agent count with the web worker under yappi. Writes one section with every
    run."""
    rates = [rates] if isinstance(rates, (int, float)) else rates
    rate = rates[0]
    results = []
    for worker in workers:
        for each in rates:
            for n in rq_workers:
                for part in plan.split(";"):
                    threads, counts = part.split(":")
                    agent_counts = tuple(int(c) for c in counts.split(","))
                    results.append(run(each, seconds, agent_counts, int(threads), worker_class=worker,
                                       rq_workers=n, repeat=repeat))
                    if split:
                        results.append(run(each, seconds, agent_counts, int(threads), split=True,
                                           worker_class=worker, rq_workers=n))
    if profile:
        threads, counts = plan.split(";")[-1].split(":")
        results.append(run(rate, seconds, (max(int(c) for c in counts.split(",")),), int(threads), profile=True,
                           worker_class=workers[0]))
    write_section(NAME, report(results))
    return results


if __name__ == "__main__":
    main()
