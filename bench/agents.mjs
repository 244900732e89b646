// Agent consoles stand-in for the live-latency and fan-out figures: N socket.io-client websocket connections
// (the console's own client library, from frontend/node_modules) in ONE Node process, token auth.
// A Node client costs a few microseconds per received frame, so hundreds of agents fit on a shared core
// without the load generator becoming the bottleneck (python-socketio clients cost ~0.3 ms per delivery).
//
//   node bench/agents.mjs --url http://127.0.0.1:P --tokens-file F --out OUT.json
//        [--events conversation.created,conversation.updated,message.created] [--watch-mod N --first-index K]
//        [--parse shared|each] [--drop-for S --drop-spread S]
//
// Every agent receives its brands' list events (conversation.*); thread events (message.*) come only for the
// conversations a socket watches. With --watch-mod N, client K+i opens (watches) each conversation whose id
// c satisfies c % N == (K+i) % N, as it learns of it (the first 20 it sees, then kept open), like an agent clicking into new
// conversations: so each conversation has about one watcher among N agents.
//
// With --drop-for S, SIGUSR2 makes every client drop its connection at once (a web process restarting, the office
// network going down) and connect again S seconds later plus a random share of --drop-spread S (socket.io-client's
// randomised reconnection delay), handing the server its last seq and the conversations it watches, as the console
// does (frontend/src/socket/client.ts); the server replays what it missed, then sends `replayed`. Back, each
// client asks what the console asks (frontend/src/socket/realtime.ts, `catchUp`): the views' counts when it had no
// seq to replay from, and, when `replayed` says the replay could not be whole, its list, the conversation it shows
// and that thread again (`--refetch 0` leaves the HTTP requests out; `--counts always`: the counts on every
// reconnect, as the console asked before 2026-11-25). Each Node process sends them on up to 100 kept-alive
// connections.
//
// Prints "READY <connected>" once every client tried to connect. On SIGTERM writes OUT.json:
// {"connected", "connected_at_end", "failed", "frames", "watches", "gc": {"count", "total_ms", "max_ms"},
//  "parse": "shared" | "each", "decode": {"decoded", "shared"} (frames decoded, and frames given a decoded copy),
//  "loop_delay_ms": {"p50", "p99", "max"} (this process's own stalls while connected: a frame arriving during one
//  is timestamped late),
//  "reconnects": [[client, dropped_at, connect_called_at, connected_at, replayed_at, complete, missed, refetched_at,
//  failed_requests], ...] (epoch s; null when it did not happen; refetched_at: the incomplete replay's requests all
//  answered), "replayed_events" (events received in those replays), "requests" (HTTP requests sent),
//  "events": [[client (first-index + i: unique across processes), event, key, seq, recv_epoch_s, data.t (the publisher's send time, if any)], ...]}
// where key is the message's external id: message.created carries it; a conversation event carries the
// message as its last_message preview, whose bench text "bench message <n> from <prefix>-c<k>" gives it back.
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";

const require = createRequire(new URL("../frontend/package.json", import.meta.url));
const { io } = require("socket.io-client");
// the socket.io-parser that socket.io-client itself loads (resolved from its own directory)
const parser = createRequire(require.resolve("socket.io-client"))("socket.io-parser");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const url = arg("url");
const tokens = readFileSync(arg("tokens-file"), "utf8").split(/\s+/).filter(Boolean);
const out = arg("out");
const wanted = new Set(arg("events", "conversation.created,conversation.updated,message.created").split(","));
const watchMod = Number(arg("watch-mod", "0"));
const dropFor = Number(arg("drop-for", "0"));
const dropSpread = Number(arg("drop-spread", "1"));
const firstIndex = Number(arg("first-index", "0"));
const refetch = arg("refetch", "1") !== "0";
// "always": the counts asked again on every reconnect, as the console did before 2026-11-25 (for A/Bs)
const countsAlways = arg("counts", "unreplayed") === "always";
const WATCH_MAX = 20;
// --parse shared (the default): the simulated consoles of this process decode a frame's text once for all of them
// (socket.io-client's own parser, given a cache of the last frames it decoded); --parse each: every console
// decodes its own copy, as before 2026-11-25. The relay writes ONE frame to every socket of the same rooms, so the
// 250 consoles of a process receive the same text 250 times; 500 real consoles parse it once each on 500 machines,
// but here every parse shares the server's 2 cores (JSON.parse was 46% of the consoles' CPU, and the consoles ~40%
// of the box's at 500 agents, 2026-11-24). Each console still receives its own websocket frame, decodes its
// Engine.IO packet and runs its own handler; a frame's receive time is taken in that handler, as before.
const parseMode = arg("parse", "shared");
const SHARED_MIN = 64;  // shorter packets (connect, acks) are decoded by each console
const SHARED_KEPT = 16;  // frames remembered (compared by content, newest first)
const decodeStats = { decoded: 0, shared: 0 };
const recentFrames = [];  // [text, packet], newest first
class SharedDecoder extends parser.Decoder {
  decodeString(str) {
    if (str.length >= SHARED_MIN) {
      for (const [text, packet] of recentFrames) {
        if (text === str) { decodeStats.shared += 1; return packet; }
      }
    }
    const packet = super.decodeString(str);
    decodeStats.decoded += 1;
    if (str.length >= SHARED_MIN && packet.type === parser.PacketType.EVENT && packet.id === undefined) {
      // only events without an ack id: socket.io-client's handler reads their data and does not change it
      recentFrames.unshift([str, packet]);
      if (recentFrames.length > SHARED_KEPT) recentFrames.pop();
    }
    return packet;
  }
}
const clientParser = parseMode === "each" ? parser : { Encoder: parser.Encoder, Decoder: SharedDecoder };
const BENCH_TEXT = /^bench message (\d+) from (.*)-c\d+$/;
const now = () => (performance.timeOrigin + performance.now()) / 1000;

// What each client received, recorded column by column in flat number arrays while the figure runs (one push
// per column, no object per event): the 500 simulated agents share the 2 cores with the server, so the recorder's
// allocations and the garbage they leave would be counted against the server. Keys and event names are numbered
// once per distinct string (a conversation event's key is parsed once per message text, not once per client).
// Expanded into the output's [client, event, key, seq, recv, t] rows at SIGTERM, after the measured window.
const rec = { client: [], event: [], key: [], seq: [], recv: [], t: [] };
const eventNames = [...wanted];
const eventCode = new Map(eventNames.map((name, k) => [name, k]));
const keyNames = [null];
const keyByText = new Map();  // last-message text or external id -> index in keyNames
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
// the same lateness second by second (epoch second -> the largest, ms), to line the process's stalls up with the
// figure's seconds: a 10 ms timer that fires late measures how long the event loop was busy before it
const lateBySecond = {};
let tick = performance.now();
function lateTimer() {
  const at = performance.now();
  const lateMs = Math.max(0, at - tick - LOOP_RESOLUTION_MS);
  const second = Math.floor((performance.timeOrigin + at) / 1000);
  lateBySecond[second] = Math.max(lateBySecond[second] ?? 0, Math.round(lateMs));
  tick = at;
  setTimeout(lateTimer, LOOP_RESOLUTION_MS).unref();
}
const sockets = [];

// The console's HTTP requests after a reconnect (its default view: mine, open, by waiting time; PAGE_SIZE 50)
const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 100 });
const VIEW = "status=open&assignee=me&sort=waiting";
let requests = 0;
function apiGet(token, path) {
  requests += 1;
  return new Promise((resolve) => {
    const req = httpRequest(`${url}/api/v1${path}`, { agent: httpAgent, headers: { Authorization: `Bearer ${token}` } },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          try { JSON.parse(Buffer.concat(chunks).toString("utf8")); } catch { /* counted by its status */ }
          resolve(res.statusCode === 200);
        });
        res.on("error", () => resolve(false));
      });
    req.on("error", () => resolve(false));
    req.end();
  });
}
const clients = [];  // {socket, index}: the connected ones, for the drops
const reconnects = [];
let replayedEvents = 0;  // events received in replays (after a reconnect), duplicates of the overlap included
let failed = 0;
let frames = 0;
let watches = 0;

// the index in keyNames of the event's message key (0: none)
function keyOf(e) {
  const external = e.data?.external_id;
  const text = external || e.data?.last_message?.text;
  if (!text) return 0;
  let k = keyByText.get(text);
  if (k === undefined) {
    const m = external ? null : BENCH_TEXT.exec(text);
    k = keyNames.push(external || (m ? `${m[2]}-${m[1]}` : null)) - 1;
    keyByText.set(text, k);
  }
  return k;
}

function record(client, e, t) {
  const code = eventCode.get(e.event);
  if (code === undefined) return;
  const sent = e.data?.t;
  rec.client.push(client); rec.event.push(code); rec.key.push(keyOf(e)); rec.seq.push(e.seq ?? -1);
  rec.recv.push(t); rec.t.push(typeof sent === "number" ? sent : NaN);
}

function recorded() {
  const rows = new Array(rec.client.length);
  for (let j = 0; j < rows.length; j++) {
    rows[j] = [rec.client[j], eventNames[rec.event[j]], keyNames[rec.key[j]], rec.seq[j] === -1 ? null : rec.seq[j],
               rec.recv[j], Number.isNaN(rec.t[j]) ? null : rec.t[j]];
  }
  return rows;
}

// The seqs a console remembers and hands over on a reconnect (`seen`), as frontend/src/socket/seq.ts's SeqTracker
// does: at most 2,000, the oldest forgotten in batches (everything up to them then counts as seen). Kept only with
// --drop-for (figure 9): figure 2's consoles never reconnect.
class SeenSeqs {
  constructor(capacity = 2000) { this.capacity = capacity; this.seen = new Set(); this.floor = -Infinity; }
  add(seq) {
    if (seq <= this.floor) return;
    this.seen.add(seq);
    if (this.seen.size <= this.capacity) return;
    const sorted = [...this.seen].sort((a, b) => a - b);
    const drop = sorted.slice(0, this.seen.size - Math.floor(this.capacity * 0.75));
    for (const s of drop) this.seen.delete(s);
    this.floor = drop[drop.length - 1];
  }
  ranges() {
    const out = Number.isFinite(this.floor) ? [[0, this.floor]] : [];
    const sorted = [...this.seen].sort((a, b) => a - b);
    for (let k = 0; k < sorted.length; k++) {
      const first = sorted[k];
      let last = first;
      while (k + 1 < sorted.length && sorted[k + 1] === last + 1) last = sorted[++k];
      out.push(first === last ? first : [first, last]);
    }
    return out;
  }
}

function connect(token, i) {
  return new Promise((resolve) => {
    const watching = [];
    let highest = null;  // the last seq seen: handed over on a reconnect, as the console's SeqTracker does
    const seen = dropFor > 0 ? new SeenSeqs() : null;
    const auth = (cb) => cb(highest === null ? { token, watch: [...watching] }
                                             : { token, last_seq: highest, seen: seen?.ranges() ?? [],
                                                 watch: [...watching] });
    const socket = io(url, { transports: ["websocket"], auth, reconnection: false, forceNew: true,
                             timeout: 30000, parser: clientParser });
    socket.on("events", (frame) => {
      const t = now();
      frames += 1;
      for (const e of frame) {
        record(firstIndex + i, e, t);
        if (typeof e.seq === "number" && (highest === null || e.seq > highest)) highest = e.seq;
        if (seen !== null && typeof e.seq === "number") seen.add(e.seq);
        if (e.replay === true) replayedEvents += 1;
        const id = e.event.startsWith("conversation.") ? e.data?.id : null;
        if (watchMod > 0 && Number.isInteger(id) && id % watchMod === (firstIndex + i) % watchMod
            && watching.length < WATCH_MAX && !watching.includes(id)) {
          watching.push(id);
          watches += 1;
          socket.emit("watch", { conversation_ids: [...watching] });
        }
      }
    });
    socket.once("connect", () => {
      sockets.push(socket);
      clients.push({ socket, index: firstIndex + i, token, watching, replaysFrom: () => highest });
      resolve(true);
    });
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
tick = performance.now();
setTimeout(lateTimer, LOOP_RESOLUTION_MS).unref();

function drop({ socket, index, token, watching, replaysFrom }) {
  const r = [index, now(), null, null, null, null, null, null, 0];
  reconnects.push(r);
  socket.disconnect();
  const failed = (ok) => { if (!ok) r[8] += 1; };
  setTimeout(() => {
    socket.once("connect", () => {
      r[3] = now();
      // the counts, when no replay will bring their moves
      if (refetch && (countsAlways || replaysFrom() === null)) void apiGet(token, `/conversations?${VIEW}&limit=1`).then(failed);
    });
    socket.once("replayed", (info) => {
      r[4] = now(); r[5] = info?.complete ?? null; r[6] = info?.missed ?? null;
      if (!refetch || info?.complete !== false) return;
      const shown = watching[watching.length - 1];  // the conversation on screen: the last one opened
      const asked = [apiGet(token, `/conversations?${VIEW}&limit=50`)];
      if (shown !== undefined) {
        asked.push(apiGet(token, `/conversations/${shown}`), apiGet(token, `/conversations/${shown}/messages?limit=50`));
      }
      void Promise.all(asked).then((oks) => { oks.forEach(failed); r[7] = now(); });
    });
    r[2] = now();
    socket.connect();
  }, (dropFor + Math.random() * dropSpread) * 1000);
}
process.on("SIGUSR2", () => { if (dropFor > 0) clients.forEach(drop); });
// with --drop-for, OUT.status says how many dropped and how many have had their replay: the figure waits for them
if (dropFor > 0) {
  setInterval(() => {
    // caught up: a whole replay ended, or the requests of an incomplete one answered
    const caughtUp = reconnects.filter((r) => r[4] !== null && (r[5] !== false || !refetch || r[7] !== null));
    writeFileSync(`${out}.status`, JSON.stringify({ dropped: reconnects.length, replayed: caughtUp.length }));
  }, 250).unref();
}

process.on("SIGTERM", () => {
  const connectedAtEnd = sockets.filter((s) => s.connected).length;
  writeFileSync(out, JSON.stringify({ connected: sockets.length, connected_at_end: connectedAtEnd, failed, frames,
                                      watches, gc, parse: parseMode, decode: decodeStats,
                                      // how late a 10 ms timer ran (its own 10 ms taken off)
                                      loop_delay_ms: { p50: late(loopDelay.percentile(50)),
                                                       p99: late(loopDelay.percentile(99)),
                                                       max: late(loopDelay.max) },
                                      late_by_second: lateBySecond, reconnects,
                                      replayed_events: replayedEvents, requests,
                                      events: recorded() }));
  for (const s of sockets) s.close();
  process.exit(0);
});
