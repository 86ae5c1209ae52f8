// The peer for bench/ws_bench.py: the most used WebSocket server (npm `ws`) as a broadcast
// server doing what `framecast serve --source stdin --ws` does: each stdin line is sent to
// every connected client as one message. Prints "websocket on ws://127.0.0.1:PORT/".
"use strict";
const { WebSocketServer } = require("ws");
const readline = require("readline");

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
wss.on("listening", () => {
  console.log(`websocket on ws://127.0.0.1:${wss.address().port}/`);
});
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  for (const c of wss.clients) c.send(line);
});
rl.on("close", () => {
  for (const c of wss.clients) c.close(1001);
  setTimeout(() => process.exit(0), 200);
});
