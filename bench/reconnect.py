"""Figure 10: a reconnect storm. `python -m bench.reconnect [--agents 500] [--rate 200] [--seconds 20] [--drop-at 4]
[--drop-for 3]`

Every console of `agents` agents drops its connection at once while customers write at `rate` msg/s (a web process
restarting, the agency's network going down), and connects again `drop-for` seconds later plus up to 1 s more
(socket.io-client's randomised reconnection delay), handing the server its last seq and the conversation it shows, as
the console does (bench/agents.mjs --drop-for). The server replays what each one missed, then says whether that
replay was whole (`replayed`). Counted: every message reaches every console, live or replayed (none lost); each
reconnect's time to its `replayed`; what the storm costs the web process; the live latency once it is over.

Reference in the same run, on the same stack: the same load and the same number of consoles with no drop (the
steady state), whose live p50 / p99 and web CPU the storm is compared with.
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (ROOT, WORKERS, CpuTimeline, Stack, log, machine_info, machine_line, ms, pct,
                          save_figure)
from bench.ingest import RELAIS_COUNT, CountWatcher, load
from bench.live_latency import LIST_EVENTS, Agents

NAME = "reconnect"
SETTLE_S = 3.0  # after the last message is listed and the last replay ended: the last live events on their way
RECOVERY_S = 120.0  # the longest a storm is waited for


def phase(stack: Stack, n_agents: int, rate: float, seconds: float, prefix: str, *, drop_at: float | None,
          drop_for: float, spy_seconds: float = 0.0) -> dict[str, Any]:
    """One load of `rate` x `seconds` messages to `n_agents` fresh consoles; with `drop_at`, every console drops
    its connection that many seconds after the first message and reconnects `drop_for` (+ up to 1) s later."""
    count = int(rate * seconds)
    with Agents(stack.base_url, stack.world["agent_tokens"][:n_agents], f"{NAME}-{prefix}", watch_mod=n_agents,
                drop_for=drop_for if drop_at is not None else 0.0) as agents:
        log(f"{agents.connected}/{n_agents} agents connected")
        time.sleep(1.0)
        watcher = CountWatcher(stack, RELAIS_COUNT, prefix, count, timeout=180)
        result: dict[str, Any] = {}
        sending = threading.Thread(target=lambda: result.update(load(
            stack.base_url + "/webhooks/meta", prefix=prefix, count=count, rate=rate, procs=1, threads=32)))
        cpu0 = stack.cpu_snapshot()
        with CpuTimeline(stack, {"agents": lambda: [p.pid for p in agents.procs]}) as timeline:
            sending.start()
            # load() starts its messages 1 s (plus count / 20,000 s) after it is called
            first_at = time.time() + 1.0 + count / 20000
            if drop_at is not None:
                time.sleep(max(0.0, first_at + drop_at - time.time()))
                agents.drop()
                log(f"every console dropped its connection; back in {drop_for:g}-{drop_for + 1:g} s")
                if spy_seconds:  # from the drop: the disconnects, the reconnects and their replays
                    from bench.spy import record
                    spies = record({"web": stack.web_pids()[-1]}, spy_seconds, NAME)
            sending.join()
            watcher.wait()
            if drop_at is not None:  # every console back and replayed (or RECOVERY_S after the drop)
                deadline = time.time() + RECOVERY_S
                while time.time() < deadline and agents.replays_ended() != (agents.connected, agents.connected):
                    time.sleep(0.25)
            time.sleep(SETTLE_S)
        cpu1 = stack.cpu_snapshot()
    if drop_at is not None and spy_seconds:
        for spy in spies:
            spy.wait(60)
    return figures(result, agents, prefix, timeline.rows, {k: cpu1[k] - cpu0[k] for k in cpu0}, n_agents, count)


def figures(result: dict[str, Any], agents: Agents, prefix: str, cpu_rows: list[list[Any]], cpu: dict[str, float],
            n_agents: int, count: int) -> dict[str, Any]:
    sent = {f"{prefix}p0-{int(r[0])}": r[2] for r in result["rows"] if r[4] == 200}
    got: dict[int, set[str]] = {}
    first: dict[tuple[int, str], float] = {}
    seqs: dict[int, list[int]] = {}
    for client, event, key, seq, received, _t in agents.events:
        if seq is not None:
            seqs.setdefault(client, []).append(seq)
        if key in sent and event in LIST_EVENTS:
            got.setdefault(client, set()).add(key)
            first[(client, key)] = min(received, first.get((client, key), received))
    # a console told its replay could not be whole fetches its views again (its list, the conversation it shows and
    # that thread: agents.mjs does those requests, and reads nothing from them): its messages are not counted as
    # lost, it is counted among the `incomplete`, and it is caught up when those requests are answered
    refetching = {r[0] for r in agents.reconnects if r[5] is False}
    clients = sorted(({r[0] for r in agents.reconnects} | set(got)) - refetching)
    lost = {c: len(sent) - len(got.get(c, ())) for c in clients}
    duplicates = sum(len(v) - len(set(v)) for v in seqs.values())  # the overlap: the console drops them by seq
    rows = agents.reconnects
    back = [r for r in rows if r[3] is not None]
    replayed = [r for r in rows if r[4] is not None]
    # caught up: the replay ended whole, or the requests after an incomplete one were answered
    caught = [(r[4] if r[5] is not False else r[7]) - r[2] for r in replayed if r[5] is not False or r[7] is not None]
    storm_start = min((r[1] for r in rows), default=None)
    storm_end = max((r[7] or r[4] or r[3] or r[2] or r[1] for r in rows), default=None)
    # the live latency of the messages sent once every console had its replay (and, for the steady phase, all),
    # and, during the storm, at the consoles already back (sent after that console's replay ended)
    after = [received - sent[key] for (client, key), received in first.items()
             if storm_end is None or sent[key] > storm_end + 0.5]
    back_at = {r[0]: r[4] for r in rows if r[4] is not None}
    during = [received - sent[key] for (client, key), received in first.items()
              if client in back_at and back_at[client] < sent[key] <= (storm_end or 0)]
    storm_cpu = [row[1] for row in cpu_rows if storm_start is not None and storm_start <= row[0] <= storm_end + 0.5]
    return {
        "agents": n_agents, "connected": agents.connected, "connected_at_end": agents.connected_at_end,
        "messages": count, "acked": len(sent), "statuses": result["statuses"],
        "lost": sum(lost.values()), "consoles_missing_some": sum(1 for v in lost.values() if v),
        "duplicates_dropped_by_seq": duplicates, "replayed_events": agents.replayed_events,
        "reconnects": len(rows), "back": len(back), "replays": len(replayed),
        "complete": sum(1 for r in replayed if r[5] is True), "incomplete": sum(1 for r in replayed if r[5] is False),
        "missed_p50": pct([r[6] for r in replayed if r[6] is not None], 50),
        "missed_max": max((r[6] for r in replayed if r[6] is not None), default=None),
        "connect_p50": pct([r[3] - r[2] for r in back], 50), "connect_p99": pct([r[3] - r[2] for r in back], 99),
        "replayed_p50": pct([r[4] - r[2] for r in replayed], 50),
        "replayed_p99": pct([r[4] - r[2] for r in replayed], 99),
        "caught_up": len(caught), "caught_up_p50": pct(caught, 50), "caught_up_p99": pct(caught, 99),
        "caught_up_max": max(caught, default=None),
        "refetched": sum(1 for r in rows if r[7] is not None), "requests": agents.requests,
        "failed_requests": sum(r[8] for r in rows if len(r) > 8),
        "storm_s": (storm_end - storm_start) if storm_start is not None else None,
        # second by second from the drop: the cores each part kept busy
        "storm_timeline": [[round(row[0] - storm_start, 1), {k: round(row[1].get(k, 0.0), 2) for k in
                                                              ("web", "workers", "postgres_total", "agents", "box")}]
                           for row in cpu_rows if storm_start is not None and storm_start <= row[0] <= storm_end + 0.5],
        "storm_cores": {k: round(sum(r.get(k, 0.0) for r in storm_cpu) / len(storm_cpu), 2)
                        for k in ("web", "workers", "postgres_total", "agents", "box")} if storm_cpu else None,
        "cores": {k: round(sum(r[1].get(k, 0.0) for r in cpu_rows) / len(cpu_rows), 2)
                  for k in ("web", "workers", "postgres_total", "agents", "box")} if cpu_rows else None,
        "cpu_ms_per_msg": {k: round(v * 1000 / count, 3) for k, v in cpu.items()},
        "live_after": len(after), "live_p50": pct(after, 50), "live_p99": pct(after, 99),
        "live_during": len(during), "during_p50": pct(during, 50), "during_p99": pct(during, 99),
        "reconnect_rows": rows,
    }


def run(n_agents: int = 500, rate: float = 200.0, seconds: float = 20.0, drop_at: float = 4.0,
        drop_for: float = 3.0, save: bool = True, profile: float = 0.0, app: Path = ROOT) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine_info(), "agents": n_agents, "rate": rate, "seconds": seconds,
                               "drop_at": drop_at, "drop_for": drop_for, "rq_workers": WORKERS}
    if app != ROOT:
        results["app"] = str(app)
    with Stack(workers=WORKERS, agents=n_agents, threads=640, label=NAME, root=app) as stack:
        load(stack.base_url + "/webhooks/meta", prefix="rw", count=100, procs=1)  # warm-up
        results["steady"] = phase(stack, n_agents, rate, seconds, "rs", drop_at=None, drop_for=drop_for)
        log(f"steady: lost {results['steady']['lost']}, live p50 {ms(results['steady']['live_p50'])} "
            f"p99 {ms(results['steady']['live_p99'])}")
        results["storm"] = storm = phase(stack, n_agents, rate, seconds, "rd", drop_at=drop_at, drop_for=drop_for,
                                         spy_seconds=profile)
        log(f"storm: lost {storm['lost']}, {storm['complete']}/{storm['reconnects']} replays whole, caught up p50 "
            f"{ms(storm['caught_up_p50'])} p99 {ms(storm['caught_up_p99'])}; live after p50 {ms(storm['live_p50'])} "
            f"p99 {ms(storm['live_p99'])}")
        log(f"storm: {storm['storm_s'] or 0:.1f} s, replayed p50 {ms(storm['replayed_p50'])} p99 "
            f"{ms(storm['replayed_p99'])}, {storm['requests']} requests, cores {storm['storm_cores']}; live at the "
            f"consoles back p50 {ms(storm['during_p50'])} p99 {ms(storm['during_p99'])}")
    if profile:  # a profiled run is slower: its figures are not the section's
        from bench.spy import OUT, summarise
        results["web_profile"] = summarise(OUT / f"spy-{NAME}-web.txt", NAME)
        print("\n".join(profile_lines(results["web_profile"])))
        return results
    return save_figure(NAME, results, report) if save else results


def profile_lines(s: dict[str, Any]) -> list[str]:
    total = s["samples"] or 1
    lines = [f"web process in the storm, py-spy --gil: {s['samples']} samples", ""]
    lines += [f"  {n / total:6.1%}  {label}" for label, n in s["keys"]]
    lines += ["", "  own samples:"] + [f"  {n / total:6.1%}  {name}" for name, n in s["own"][:15]]
    lines += ["", "  inclusive:"] + [f"  {n / total:6.1%}  {name}" for name, n in s["inclusive"][:40]]
    return lines


def _cores(c: dict[str, float] | None) -> str:
    if not c:
        return "-"
    return (f"web {c['web']:.2f}, worker {c['workers']:.2f}, PostgreSQL {c['postgres_total']:.2f}, consoles "
            f"{c['agents']:.2f}, box {c['box']:.2f}")


def report(res: dict[str, Any]) -> str:
    steady, storm = res["steady"], res["storm"]
    ratio = (storm["caught_up_p99"] / steady["live_p99"]) if storm["caught_up_p99"] and steady["live_p99"] else None
    return "\n".join([
        "## 10. Reconnect storm",
        "",
        machine_line(res["machine"]),
        f"Command: `python -m bench.reconnect --agents {res['agents']} --rate {res['rate']:g} --seconds "
        f"{res['seconds']:g} --drop-at {res['drop_at']:g} --drop-for {res['drop_for']:g}`; {res['rq_workers']} RQ "
        "worker, 1 gunicorn gevent web process, PostgreSQL + Redis. Every console drops its connection "
        f"{res['drop_at']:g} s into the load and connects again {res['drop_for']:g}-{res['drop_for'] + 1:g} s later "
        "with its last seq, the seqs it has and the conversation it shows; the server replays what it missed, then "
        "sends `replayed`. Each console then asks what the console asks (`catchUp`): after an incomplete replay, its "
        "list, the conversation it shows and that thread (and the counts when it had no seq to replay from).",
        "Reference in the same run, same stack: the same load to as many consoles with no drop (steady).",
        "",
        "| | steady (reference) | storm |",
        "|---|---|---|",
        f"| messages acked / sent | {steady['acked']} / {steady['messages']} | {storm['acked']} / "
        f"{storm['messages']} |",
        f"| **messages lost** (a console whose replay was whole never got the message's queue event, live or replayed) "
        f"| {steady['lost']} | "
        f"**{storm['lost']}** ({storm['consoles_missing_some']} consoles missing some) |",
        f"| consoles connected at the end | {steady['connected_at_end']} / {steady['agents']} | "
        f"{storm['connected_at_end']} / {storm['agents']} |",
        f"| reconnects / back / replays ended | - | {storm['reconnects']} / {storm['back']} / {storm['replays']} |",
        f"| replays whole / told to fetch again | - | {storm['complete']} / {storm['incomplete']} |",
        f"| events missed per console, p50 / max | - | {storm['missed_p50']} / {storm['missed_max']} |",
        f"| events replayed (with the overlap's) / dropped by seq as already seen | - | {storm['replayed_events']} / "
        f"{storm['duplicates_dropped_by_seq']} |",
        f"| connect, p50 / p99 | - | {ms(storm['connect_p50'])} / {ms(storm['connect_p99'])} |",
        f"| `replayed` (connect called -> `replayed`), p50 / p99 | - | {ms(storm['replayed_p50'])} / "
        f"{ms(storm['replayed_p99'])} |",
        f"| HTTP requests after the reconnects (list, conversation and thread after an incomplete replay; counts "
        f"without a seq to replay from) / failed | - | {storm['requests']} / {storm['failed_requests']} |",
        f"| **caught up** (connect called -> a whole `replayed`, or an incomplete one's requests answered), p50 / p99 "
        f"/ max | - | {ms(storm['caught_up_p50'])} / **{ms(storm['caught_up_p99'])}** / {ms(storm['caught_up_max'])} "
        f"({storm['caught_up']} of {storm['reconnects']}) |",
        f"| storm (first drop -> last `replayed`) | - | {storm['storm_s']:.1f} s |" if storm["storm_s"] else "",
        f"| cores in the storm | - | {_cores(storm['storm_cores'])} |",
        f"| cores over the run | {_cores(steady['cores'])} | {_cores(storm['cores'])} |",
        f"| live latency (webhook POST -> queue event), p50 / p99 | {ms(steady['live_p50'])} / "
        f"{ms(steady['live_p99'])} | {ms(storm['live_p50'])} / {ms(storm['live_p99'])} (messages sent after the "
        f"storm, {storm['live_after']} deliveries) |",
        f"| live latency during the storm at the consoles already back, p50 / p99 | - | {ms(storm['during_p50'])} / "
        f"{ms(storm['during_p99'])} ({storm['live_during']} deliveries) |",
        "",
        f"Caught-up p99 / steady live p99: {ratio:.1f}x." if ratio else "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--drop-at", type=float, default=4.0)
    parser.add_argument("--drop-for", type=float, default=3.0)
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                        help="py-spy the web process for SECONDS from the drop and print where its time went "
                             "(RESULTS.md is left as it is: a profiled run is slower)")
    parser.add_argument("--app", type=Path, default=ROOT, metavar="CHECKOUT",
                        help="run the app of another checkout (an A/B: e.g. a `git worktree` of the commit before); "
                             "RESULTS.md is left as it is")
    args = parser.parse_args()
    app = args.app.resolve()
    run(args.agents, args.rate, args.seconds, args.drop_at, args.drop_for, save=app == ROOT, profile=args.profile,
        app=app)


if __name__ == "__main__":
    main()
