// The live page in a real browser: Debian's chromium, headless, driven by puppeteer-core
// (which never downloads a browser). Run by run.sh (ctest: browser.live_page).
//
// 1. `framecast serve --ws`: the page shows the welcome, then the time ticking.
// 2. `framecast serve --chat --ws`: two browser pages, one `framecast chat` and one
//    tutorial-style Python chat client talk in one room; every one sees every message.
// Screenshots of each view go to OUT_DIR (the build folder).
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

const BIN = process.env.FRAMECAST_BIN;
const PYTHON = process.env.FRAMECAST_PYTHON || "/usr/bin/python3";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const OUT_DIR = process.env.OUT_DIR || ".";
const DEADLINE = 20000;

const children = [];
function start(cmd, args) {
  const p = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
  p.out = "";
  p.err = "";
  p.stdout.on("data", (d) => { p.out += d; });
  p.stderr.on("data", (d) => { p.err += d; });
  children.push(p);
  return p;
}

// Resolves once `pattern` appears in the process's stdout or stderr; fails after DEADLINE.
function waitFor(p, pattern, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    (function poll() {
      const m = pattern.exec(p.out) || pattern.exec(p.err);
      if (m) return resolve(m);
      if (Date.now() - t0 > DEADLINE) {
        return reject(new Error(`timed out waiting for ${what}\nstdout: ${p.out.slice(-1500)}\nstderr: ${p.err.slice(-1500)}`));
      }
      setTimeout(poll, 20);
    })();
  });
}

async function serve(...args) {
  const p = start(BIN, ["serve", "--listen", "127.0.0.1:0", "--ws", "127.0.0.1:0", ...args]);
  const ws = await waitFor(p, /websocket on ws:\/\/([0-9.]+:\d+)\//, "the websocket listener");
  const tcp = await waitFor(p, /listening on ([0-9.]+):(\d+)/, "the TCP listener");
  return { p, http: `http://${ws[1]}/`, tcpPort: tcp[2] };
}

function textOf(page, selector) {
  return page.$eval(selector, (el) => el.textContent);
}

async function streamView(browser) {
  const { p, http } = await serve("--interval", "0.3");
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 760, deviceScaleFactor: 1 });
  await page.goto(http);
  await page.waitForFunction(() => document.getElementById("log").textContent.includes("Welcome to the server!"),
                             { timeout: DEADLINE });
  await page.waitForFunction(() => !document.getElementById("clock").hidden, { timeout: DEADLINE });
  const first = await textOf(page, "#latest");
  // Ticking: the latest message changes to another "The time is ..." line.
  await page.waitForFunction((before) => {
    const now = document.getElementById("latest").textContent;
    return now !== before && /^The time is \d+\.\d+$/.test(now);
  }, { timeout: DEADLINE }, first);
  await page.waitForFunction(() => document.querySelectorAll("#log .row").length >= 6, { timeout: DEADLINE });
  const status = await page.$eval("#status", (el) => el.dataset.state);
  if (status !== "open") throw new Error(`status is ${status}, not open`);
  await page.screenshot({ path: path.join(OUT_DIR, "live-page-stream.png") });
  console.log("stream view: welcome and ticking time shown");
  await page.close();
  p.kill("SIGTERM");
}

const PY_CHAT_CLIENT = String.raw`
import socket, sys, threading
HEADER_LENGTH = 10
port, my_username = int(sys.argv[1]), sys.argv[2]
client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client_socket.connect(("127.0.0.1", port))
username = my_username.encode("utf-8")
client_socket.sendall(f"{len(username):<{HEADER_LENGTH}}".encode("utf-8") + username)
def send_lines():
    for line in sys.stdin:
        message = line.rstrip("\n").encode("utf-8")
        if message:
            client_socket.sendall(f"{len(message):<{HEADER_LENGTH}}".encode("utf-8") + message)
threading.Thread(target=send_lines, daemon=True).start()
def recv_exact(n):
    data = b""
    while len(data) < n:
        chunk = client_socket.recv(n - len(data))
        if not chunk:
            sys.exit()
        data += chunk
    return data
while True:
    u = recv_exact(int(recv_exact(HEADER_LENGTH).decode("utf-8").strip())).decode("utf-8")
    m = recv_exact(int(recv_exact(HEADER_LENGTH).decode("utf-8").strip())).decode("utf-8")
    print(f"{u} > {m}", flush=True)
`;

async function joinPage(browser, http, name) {
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 760, deviceScaleFactor: 1 });
  await page.goto(http);
  await page.bringToFront();
  await page.waitForSelector("#name-input", { visible: true, timeout: DEADLINE });
  // The page remembers the last name (localStorage, shared by the pages of one browser).
  await page.$eval("#name-input", (el) => { el.value = ""; });
  await page.type("#name-input", name);
  await page.click("#join");
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "open", { timeout: DEADLINE });
  return page;
}

async function say(page, text) {
  await page.bringToFront();
  await page.type("#chat-input", text);
  await page.click("#send");
}

async function pageHas(page, label, name, text) {
  try {
    await page.waitForFunction((n, t) => Array.from(document.querySelectorAll("#messages .msg")).some(
      (m) => m.querySelector(".who").textContent === n && m.querySelector(".bubble").textContent === t),
    { timeout: DEADLINE }, name, text);
  } catch (e) {
    const seen = await page.$eval("#messages", (el) => el.innerText);
    await page.screenshot({ path: path.join(OUT_DIR, `failed-${label}.png`) });
    throw new Error(`${label}'s page did not show ${name}: ${text}; it shows:\n${seen}`);
  }
}

async function chatView(browser) {
  const { p, http, tcpPort } = await serve("--chat");
  const ada = await joinPage(browser, http, "ada");
  await waitFor(p, /ada joined/, "ada joining");
  const grace = await joinPage(browser, http, "grace");
  await waitFor(p, /grace joined/, "grace joining");
  const linus = start(BIN, ["chat", `127.0.0.1:${tcpPort}`, "--name", "linus"]);
  await waitFor(p, /linus joined/, "linus (framecast chat) joining");
  const guido = start(PYTHON, ["-u", "-c", PY_CHAT_CLIENT, tcpPort, "guido"]);
  await waitFor(p, /guido joined/, "guido (Python) joining");

  await say(ada, "hello from Ada's browser ✓");
  await say(grace, "Grace here, also in a browser");
  linus.stdin.write("linus from the terminal\n");
  guido.stdin.write("guido from the tutorial client\n");

  const all = [["ada", "hello from Ada's browser ✓"], ["grace", "Grace here, also in a browser"],
               ["linus", "linus from the terminal"], ["guido", "guido from the tutorial client"]];
  for (const [who, text] of all) {
    await pageHas(ada, "ada", who === "ada" ? "you" : who, text);
    await pageHas(grace, "grace", who === "grace" ? "you" : who, text);
    const line = new RegExp(`${who} > ${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\n`);
    if (who !== "linus") await waitFor(linus, line, `linus seeing ${who}`);
    if (who !== "guido") await waitFor(guido, line, `guido seeing ${who}`);
  }
  await ada.screenshot({ path: path.join(OUT_DIR, "live-page-chat.png") });
  console.log("chat view: two browsers, framecast chat and a Python client all saw every message");
  linus.stdin.end();
  p.kill("SIGTERM");
}

(async () => {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    protocolTimeout: 30000,
    // Two pages at once: neither may be throttled as a background tab.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
           "--disable-renderer-backgrounding"],
  });
  let failed = false;
  try {
    await streamView(browser);
    await chatView(browser);
  } catch (e) {
    console.error(e.stack || String(e));
    failed = true;
  } finally {
    await browser.close();
    for (const c of children) { try { c.kill("SIGKILL"); } catch (e) { /* gone */ } }
  }
  process.exit(failed ? 1 : 0);
})();
