// Agent consoles stand-in for the live-latency and fan-out figures: N socket.io-client websocket connections
// (the console's own client library, from frontend/node_modules) in ONE Node process, token auth.
// A Node client costs a few microseconds per received frame, so hundreds of agents fit on a shared core
// without the load generator becoming the bottleneck (python-socketio clients cost ~0.3 ms per delivery).
//
//   node bench/agents.mjs --url http://127.0.0.1:P --tokens-file F --out OUT.json [--events message.created]
//
// Prints "READY <connected>" once every client tried to connect. On SIGTERM writes OUT.json:
// {"connected", "connected_at_end", "failed", "frames",
//  "events": [[client, event, external_id, seq, recv_epoch_s, data.t (the publisher's send time, if any)], ...]}
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

const require = createRequire(new URL("../frontend/package.json", import.meta.url));
const { io } = require("socket.io-client");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}

const url = arg("url");
const tokens = readFileSync(arg("tokens-file"), "utf8").split(/\s+/).filter(Boolean);
const out = arg("out");
const wanted = new Set(arg("events", "message.created").split(","));
const now = () => (performance.timeOrigin + performance.now()) / 1000;

const events = [];
const sockets = [];
let failed = 0;
let frames = 0;

function connect(token, i) {
  return new Promise((resolve) => {
    const socket = io(url, { transports: ["websocket"], auth: { token }, reconnection: false, forceNew: true,
                             timeout: 30000 });
    socket.on("events", (frame) => {
      const t = now();
      frames += 1;
      for (const e of frame) {
        if (wanted.has(e.event)) events.push([i, e.event, e.data?.external_id ?? null, e.seq, t, e.data?.t ?? null]);
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

process.on("SIGTERM", () => {
  const connectedAtEnd = sockets.filter((s) => s.connected).length;
  writeFileSync(out, JSON.stringify({ connected: sockets.length, connected_at_end: connectedAtEnd, failed, frames,
                                      events }));
  for (const s of sockets) s.close();
  process.exit(0);
});
