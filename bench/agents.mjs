// Agent consoles stand-in for the live-latency and fan-out figures: N socket.io-client websocket connections
// (the console's own client library, from frontend/node_modules) in ONE Node process, token auth.
// A Node client costs a few microseconds per received frame, so hundreds of agents fit on a shared core
// without the load generator becoming the bottleneck (python-socketio clients cost ~0.3 ms per delivery).
//
//   node bench/agents.mjs --url http://127.0.0.1:P --tokens-file F --out OUT.json
//        [--events conversation.created,conversation.updated,message.created] [--watch-mod N --first-index K]
//
// Every agent receives its brands' list events (conversation.*); thread events (message.*) come only for the
// conversations a socket watches. With --watch-mod N, client K+i opens (watches) each conversation whose id
// c satisfies c % N == (K+i) % N, as it learns of it (the first 20 it sees, then kept open), like an agent clicking into new
// conversations: so each conversation has about one watcher among N agents.
//
// Prints "READY <connected>" once every client tried to connect. On SIGTERM writes OUT.json:
// {"connected", "connected_at_end", "failed", "frames", "watches", "gc": {"count", "total_ms", "max_ms"},
//  "loop_delay_ms": {"p50", "p99", "max"} (this process's own stalls while connected: a frame arriving during one
//  is timestamped late),
//  "events": [[client (first-index + i: unique across processes), event, key, seq, recv_epoch_s, data.t (the publisher's send time, if any)], ...]}
// where key is the message's external id: message.created carries it; a conversation event carries the
// message as its last_message preview, whose bench text "bench message <n> from <prefix>-c<k>" gives it back.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";

const require = createRequire(new URL("../frontend/package.json", import.meta.url));
const { io } = require("socket.io-client");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const url = arg("url");
const tokens = readFileSync(arg("tokens-file"), "utf8").split(/\s+/).filter(Boolean);
const out = arg("out");
const wanted = new Set(arg("events", "conversation.created,conversation.updated,message.created").split(","));
const watchMod = Number(arg("watch-mod", "0"));
const firstIndex = Number(arg("first-index", "0"));
const WATCH_MAX = 20;
const BENCH_TEXT = /^bench message (\d+) from (.*)-c\d+$/;
const now = () => (performance.timeOrigin + performance.now()) / 1000;

const events = [];
// the load generator's own stalls, reported so they are not mistaken for the server's: garbage-collection pauses
// and the event loop's delay (a frame that arrives during either is timestamped late)
const gc = { count: 0, total_ms: 0, max_ms: 0 };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gc.count += 1;
    gc.total_ms += entry.duration;
    gc.max_ms = Math.max(gc.max_ms, entry.duration);
  }
}).observe({ entryTypes: ["gc"] });
const LOOP_RESOLUTION_MS = 10;
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
const late = (ns) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS);
const sockets = [];
let failed = 0;
let frames = 0;
let watches = 0;

function keyOf(e) {
  if (e.data?.external_id) return e.data.external_id;
  const m = BENCH_TEXT.exec(e.data?.last_message?.text ?? "");
  return m ? `${m[2]}-${m[1]}` : null;
}

function connect(token, i) {
  return new Promise((resolve) => {
    const socket = io(url, { transports: ["websocket"], auth: { token }, reconnection: false, forceNew: true,
                             timeout: 30000 });
    const watching = [];
    socket.on("events", (frame) => {
      const t = now();
      frames += 1;
      for (const e of frame) {
        if (wanted.has(e.event)) events.push([firstIndex + i, e.event, keyOf(e), e.seq, t, e.data?.t ?? null]);
        const id = e.event.startsWith("conversation.") ? e.data?.id : null;
        if (watchMod > 0 && Number.isInteger(id) && id % watchMod === (firstIndex + i) % watchMod
            && watching.length < WATCH_MAX && !watching.includes(id)) {
          watching.push(id);
          watches += 1;
          socket.emit("watch", { conversation_ids: [...watching] });
        }
      }
    });
    socket.once("connect", () => { sockets.push(socket); resolve(true); });
    socket.once("connect_error", (err) => { failed += 1; console.log(`client ${i} failed: ${err.message}`); resolve(false); });
  });
}

// connect in waves so the server's accept queue and thread pool are not hit by hundreds at once
const WAVE = 25;
for (let start = 0; start < tokens.length; start += WAVE) {
  await Promise.all(tokens.slice(start, start + WAVE).map((t, k) => connect(t, start + k)));
}
console.log(`READY ${sockets.length}`);
loopDelay.enable();

process.on("SIGTERM", () => {
  const connectedAtEnd = sockets.filter((s) => s.connected).length;
  writeFileSync(out, JSON.stringify({ connected: sockets.length, connected_at_end: connectedAtEnd, failed, frames,
                                      watches, gc,
                                      // how late a 10 ms timer ran (its own 10 ms taken off)
                                      loop_delay_ms: { p50: late(loopDelay.percentile(50)),
                                                       p99: late(loopDelay.percentile(99)),
                                                       max: late(loopDelay.max) },
                                      events }));
  for (const s of sockets) s.close();
  process.exit(0);
});
