"""Figure 8: scale-out. `python -m bench.scale_out [--messages 1200] [--clients 200]`

The same two loads on 1 web process + 1 RQ worker, then on 2 web processes + 2 RQ workers (fresh stack each,
one database, one Redis message queue / REDIS_PREFIX shared by the processes of a stack):
  * ingest: closed-loop single-entry webhooks (bench.ingest.load, 2 load processes per web process, each
    posting to its web process) -> messages/s until listed (bench.ingest.CountWatcher) and ack messages/s;
  * fan-out: `--clients` socket.io clients split evenly over the web processes (a sticky load balancer), a burst
    of events published on the shared Redis channel (bench.fanout) -> deliveries/s.
Each web process is `gunicorn -w 1 -k gthread --threads 300`. Headline: the 2+2 / 1+1 ratio.
"""
from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from bench.common import GUNICORN, Stack, free_port, log, machine_info, machine_line, ms, save_figure, wait_http

NAME = "scale_out"
THREADS = 300


def ingest_run(stack: Stack, urls: list[str], count: int) -> dict[str, Any]:
    from bench.ingest import RELAIS_COUNT, CountWatcher, load

    per_url = count // len(urls)
    per_url -= per_url % 2
    cpu0 = stack.cpu_snapshot()
    watcher = CountWatcher(stack, RELAIS_COUNT, "x", per_url * len(urls), timeout=240)
    results: list[dict[str, Any]] = []

    def one(i: int, url: str) -> None:
        results.append(load(url + "/webhooks/meta", prefix=f"x{i}", count=per_url, procs=2, threads=12))

    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done_at = watcher.wait()
    cpu1 = stack.cpu_snapshot()
    started = min(r["started"] for r in results)
    answered = max(r["answered"] for r in results)
    n = sum(r["messages"] for r in results)
    ok = sum(r["statuses"].get("200", 0) for r in results)
    return {"messages": n, "ok_posts": ok, "listed": watcher.last,
            "msgs_per_s": n / (done_at - started) if done_at else None,
            "ack_msgs_per_s": n / (answered - started),
            "cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0}}


def run_config(n: int, messages: int, clients: int, burst: int) -> dict[str, Any]:
    from bench.fanout import measure_phases

    with Stack(workers=n, agents=clients, threads=THREADS, label=f"{NAME}-{n}") as stack:
        urls = [stack.base_url]
        web_pids = stack.web_pids()[1:]
        # the same environment as the first web process (Stack.env() draws a new SECRET_KEY, which derives the
        # key that decrypts channel credentials: every process of a deployment must share it)
        raw = open(f"/proc/{stack.procs['web'].pid}/environ", "rb").read().split(b"\0")
        env = dict(x.decode().split("=", 1) for x in raw if b"=" in x)
        for k in range(1, n):
            port = free_port()
            stack._spawn(f"web{k}", [GUNICORN, "-w", "1", "-k", "gthread", "--threads", str(THREADS), "-b",
                                     f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"], env)
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/webhooks/meta", timeout=60)
            urls.append(url)
            time.sleep(1.0)
            master = stack.procs[f"web{k}"].pid
            web_pids += [int(x) for x in open(f"/proc/{master}/task/{master}/children").read().split()]
        from bench.ingest import load
        for u in urls:
            load(u + "/webhooks/meta", prefix=f"w{urls.index(u)}", count=100, procs=1)  # warm-up
        time.sleep(2.0)
        res: dict[str, Any] = {"web": n, "workers": n}
        res["ingest"] = ingest_run(stack, urls, messages)
        log(f"{n}+{n}: ingest {res['ingest']['msgs_per_s'] or 0:.1f} msg/s listed, ack "
            f"{res['ingest']['ack_msgs_per_s']:.0f} msg/s")
        res["fanout"] = measure_phases(stack, urls, stack.world["agent_tokens"][:clients], 100, burst,
                                       f"{NAME}-{n}", web_pids)
        log(f"{n}+{n}: fan-out {res['fanout']['deliveries_per_s']:.0f} deliveries/s")
    return res


def run(messages: int = 1200, clients: int = 200, burst: int = 200) -> dict[str, Any]:
    info = machine_info()
    res: dict[str, Any] = {"machine": info, "messages": messages, "clients": clients, "burst": burst,
                           "runs": [run_config(1, messages, clients, burst), run_config(2, messages, clients, burst)]}
    return save_figure(NAME, res, report)


def report(res: dict[str, Any]) -> str:
    one, two = res["runs"]

    def ratio(a: float | None, b: float | None) -> str:
        return "n/a" if not a or not b else f"**{b / a:.2f}x**"
    i1, i2, f1, f2 = one["ingest"], two["ingest"], one["fanout"], two["fanout"]
    lines = ["## 8. Scale-out: 2 web + 2 workers vs 1 + 1 (shared Redis message queue)", "",
             machine_line(res["machine"]), "",
             f"Each web process `gunicorn -w 1 -k gthread --threads {THREADS} wsgi:app`; workers `python -m "
             "inbox.jobs.worker`; one database and one REDIS_PREFIX per stack. Ingest: closed loop, single-entry "
             f"webhooks, {res['messages']} messages, 2 load processes x 12 threads per web process. Fan-out: "
             f"{res['clients']} clients split evenly over the web processes, burst of {res['burst']} events on the "
             "shared Socket.IO Redis channel.", "",
             "| measure | 1 web + 1 worker | 2 web + 2 workers | ratio 2+2 / 1+1 |", "|---|---|---|---|",
             f"| ingest msgs/s until listed | {i1['msgs_per_s'] or 0:.1f} | {i2['msgs_per_s'] or 0:.1f} | "
             f"{ratio(i1['msgs_per_s'], i2['msgs_per_s'])} |",
             f"| ingest ack msgs/s | {i1['ack_msgs_per_s']:.0f} | {i2['ack_msgs_per_s']:.0f} | "
             f"{ratio(i1['ack_msgs_per_s'], i2['ack_msgs_per_s'])} |",
             f"| ingest CPU s web / workers / all postgres | {i1['cpu_s']['web']} / {i1['cpu_s']['workers']} / "
             f"{i1['cpu_s']['postgres_total']} | {i2['cpu_s']['web']} / {i2['cpu_s']['workers']} / "
             f"{i2['cpu_s']['postgres_total']} | |",
             f"| fan-out deliveries/s (burst) | {f1['deliveries_per_s']:,.0f} ({f1['burst_delivered']:,}/"
             f"{f1['burst_expected']:,}) | {f2['deliveries_per_s']:,.0f} ({f2['burst_delivered']:,}/"
             f"{f2['burst_expected']:,}) | {ratio(f1['deliveries_per_s'], f2['deliveries_per_s'])} |",
             f"| fan-out latency at 5 events/s p50 / p99 | {ms(f1['low_p50'])} / {ms(f1['low_p99'])} | "
             f"{ms(f2['low_p50'])} / {ms(f2['low_p99'])} | |",
             f"| fan-out CPU per delivery, web / clients | {f1['web_cpu_ms_per_delivery']:.3f} / "
             f"{f1.get('client_cpu_ms_per_delivery', 0):.3f} ms | {f2['web_cpu_ms_per_delivery']:.3f} / "
             f"{f2.get('client_cpu_ms_per_delivery', 0):.3f} ms | |",
             f"| fan-out clients connected at the end | {f1['connected_at_end']}/{f1['connected']} | "
             f"{f2['connected_at_end']}/{f2['connected']} | |",
             "", f"Raw data: `bench/out/{NAME}.json`. Both stacks share the same 2 cores (and the load generators and "
             "PostgreSQL): the ratio shows what a second process adds when no core is free, not what it adds on "
             "its own machine."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1200)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    run(args.messages, args.clients, args.burst)


if __name__ == "__main__":
    main()
