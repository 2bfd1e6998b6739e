// Drives page.html in headless Chromium (Debian's package, through playwright-core) against a running
// `infrahaus dev --demo`, and prints one JSON report on stdout.
//
//   node harness.mjs '{"api": "http://127.0.0.1:8000", "pvePort": 8006, "sshPort": 2222}'
//
// What it runs, all on 127.0.0.1:
// - a small front server: the page and its script at `/`, everything under /api reverse-proxied to the API, so
//   page and API share one origin (the recommended deployment: the session cookie is first-party, no CORS);
// - a TCP relay in front of the simulator's Proxmox API (the page registers the node through it), which the
//   harness holds while the browser is disconnected, so the creation is still running when the browser resumes;
// - the browser: log in, register the node, submit an invalid form, then create from `web-hello`.
// The front server cuts the first progress stream after CUT_AFTER events; the browser must reconnect by itself
// with `Last-Event-ID`. Both servers record what they saw; the page records what it got (`window.report`).
import { readFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const CUT_AFTER = 3;
const PAGE_TIMEOUT_MS = 90_000;
const config = JSON.parse(process.argv[2]);
const api = new URL(config.api);
const here = (name) => fileURLToPath(new URL(name, import.meta.url));
const started = Date.now();
const elapsed = () => Date.now() - started;

// ---------------------------------------------------------------- the simulator relay (can be held)

const relay = { held: false, heldWrites: 0, holds: [], queue: [], connections: 0 };

function hold(reason) {
  if (relay.held) return;
  relay.held = true;
  relay.holds.push({ reason, from: elapsed(), until: null, releasedBy: null, writes: 0 });
}

function release(by) {
  if (!relay.held) return;
  relay.held = false;
  const current = relay.holds.at(-1);
  Object.assign(current, { until: elapsed(), releasedBy: by });
  for (const write of relay.queue.splice(0)) write();
}

const relayServer = net.createServer((client) => {
  relay.connections += 1;
  const upstream = net.connect(config.pvePort, "127.0.0.1");
  client.on("data", (chunk) => {
    if (!relay.held) return upstream.write(chunk);
    relay.heldWrites += 1;
    relay.holds.at(-1).writes += 1;
    relay.queue.push(() => upstream.write(chunk));
  });
  upstream.on("data", (chunk) => client.write(chunk));
  client.on("end", () => (relay.held ? relay.queue.push(() => upstream.end()) : upstream.end()));
  upstream.on("end", () => client.end());
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.on("close", () => upstream.destroy());
  upstream.on("close", () => client.destroy());
});

// ---------------------------------------------------------------- the front server (page + reverse proxy)

const streams = [];
const requests = [];
let releaseTimer = null;

const STREAM_PATH = /^\/api\/containers\/[^/]+\/progress(\?|$)/;
// An SSE event ends at a blank line (CRLF, LF or CR line endings).
const EVENT_END = /\r\n\r\n|\n\n|\r\r/;

const front = http.createServer(async (req, res) => {
  requests.push({ method: req.method, path: req.url.split("?")[0], at: elapsed() });
  const path = req.url.split("?")[0];
  if (path === "/" || path === "/page.js") {
    const [file, type] = path === "/" ? ["page.html", "text/html"] : ["page.js", "text/javascript"];
    res.writeHead(200, { "content-type": `${type}; charset=utf-8`, "cache-control": "no-store" });
    res.end(await readFile(here(file)));
    return;
  }
  if (!path.startsWith("/api/")) {
    res.writeHead(404).end();
    return;
  }
  const upstream = http.request({
    host: "127.0.0.1",
    port: api.port,
    method: req.method,
    path: req.url,
    headers: req.headers,
  });
  upstream.on("error", (error) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end(String(error));
  });
  upstream.on("response", (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    if (STREAM_PATH.test(req.url) && req.method === "GET") relayStream(req, answer, res);
    else answer.pipe(res);
    if (req.method === "POST" && path === "/api/containers" && answer.statusCode === 202) {
      // Hold the creation until the browser has opened its stream, so the stream starts at its beginning.
      hold("until the first stream opens");
    }
  });
  req.pipe(upstream);
});

function relayStream(req, answer, res) {
  const stream = {
    status: answer.statusCode,
    lastEventId: req.headers["last-event-id"] ?? null,
    openedAt: elapsed(),
    events: [],
    named: [],
    retry: null,
    cut: false,
    ended: false,
  };
  streams.push(stream);
  if (streams.length === 1) release("first stream opened");
  else if (relay.held) {
    clearTimeout(releaseTimer);
    release("browser reconnected");
  }
  let buffer = "";
  answer.setEncoding("utf8");
  answer.on("data", (chunk) => {
    if (stream.cut) return;
    buffer += chunk;
    let match;
    while (!stream.cut && (match = EVENT_END.exec(buffer)) !== null) {
      const block = buffer.slice(0, match.index + match[0].length);
      buffer = buffer.slice(block.length);
      const fields = Object.fromEntries(
        block
          .split(/\r\n|\n|\r/)
          .filter((line) => line && !line.startsWith(":"))
          .map((line) => {
            const at = line.indexOf(":");
            return at < 0 ? [line, ""] : [line.slice(0, at), line.slice(at + 1).replace(/^ /, "")];
          }),
      );
      if ("retry" in fields) stream.retry = Number(fields.retry);
      if ("event" in fields) stream.named.push(fields.event);
      if ("data" in fields) {
        const { type } = JSON.parse(fields.data);
        stream.events.push({ id: fields.id === undefined ? null : Number(fields.id), type });
      }
      const withId = stream.events.filter((e) => e.id !== null).length;
      if (streams.length === 1 && withId >= CUT_AFTER) {
        // Drop the connection right after a complete event, mid-creation: the browser has seen exactly these ids.
        stream.cut = true;
        hold("browser disconnected");
        // If the browser never came back, let the creation finish anyway (the report will show it).
        releaseTimer = setTimeout(() => release("timeout"), 15_000);
        answer.destroy();
        // A graceful end of the connection (FIN after the data), so the browser surely has the last block before
        // it notices the drop; destroy() could reset the connection and lose what was still in flight.
        res.write(block, () => res.socket.end());
        return;
      }
      res.write(block);
    }
  });
  answer.on("end", () => {
    stream.ended = true;
    res.end(buffer);
  });
}

// ---------------------------------------------------------------- the browser

async function stopOnFailure(page) {
  const failed = await page.evaluate(() => window.report.failure);
  if (failed) throw new Error(`the page failed: ${failed}`);
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
}

const relayPort = await listen(relayServer);
const frontPort = await listen(front);
const origin = `http://127.0.0.1:${frontPort}`;

const browser = await chromium.launch({
  executablePath: config.chromium ?? "/usr/bin/chromium",
  headless: true,
  // playwright-core adds --headless, --no-sandbox (as root) and a fresh --user-data-dir by itself.
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // No name resolves: the browser can only reach the loopback addresses it is given.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
  ],
});
const seen = { browserVersion: browser.version(), urls: [], console: [], pageErrors: [], failedRequests: [] };
let report = null;
let failure = null;
try {
  const page = await browser.newPage();
  page.on("request", (request) => seen.urls.push(request.url()));
  page.on("console", (message) => seen.console.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => seen.pageErrors.push(String(error)));
  page.on("requestfailed", (request) => seen.failedRequests.push(`${request.url()}: ${request.failure()?.errorText}`));
  page.setDefaultTimeout(PAGE_TIMEOUT_MS);

  await page.goto(`${origin}/?pve_port=${relayPort}&ssh_port=${config.sshPort}`);
  await page.fill("#login [name=username]", "root@pam");
  await page.fill("#login [name=password]", "demo");
  await page.click("#login button");
  await page.waitForFunction(() => window.report.csrfMissing !== null || window.report.failure !== null);
  await stopOnFailure(page);

  await page.click("#register");
  await page.waitForFunction(() => window.report.node !== null || window.report.failure !== null);
  await stopOnFailure(page);

  // An invalid form, two fields wrong at once: the problem's `errors` land next to each field.
  await page.fill("#create [name=hostname]", "Not_A_Hostname!");
  await page.fill("#create [name=vmid]", "5");
  await page.click("#create button");
  await page.waitForFunction(() => window.report.validation !== null || window.report.failure !== null);
  await stopOnFailure(page);
  seen.shownNextToHostname = await page.textContent('.field-error[data-field="hostname"]');
  seen.shownNextToVmid = await page.textContent('.field-error[data-field="vmid"]');
  seen.formError = await page.textContent("#form-error");

  await page.fill("#create [name=hostname]", "browser-web");
  await page.fill("#create [name=vmid]", "");
  await page.click("#create button");
  await page.waitForFunction(() => window.report.finished);
  report = await page.evaluate(() => window.report);
  seen.progressItems = await page.locator("#progress li").count();
  seen.statusText = await page.textContent("#status");
  seen.dashboardRows = await page.locator("#dashboard li").allTextContents();
} catch (error) {
  failure = String(error?.stack ?? error);
} finally {
  clearTimeout(releaseTimer);
  await browser.close();
  front.close();
  relayServer.close();
  front.closeAllConnections?.();
}

process.stdout.write(
  `${JSON.stringify({
    failure,
    origin,
    report,
    seen,
    streams,
    relay: { holds: relay.holds, heldWrites: relay.heldWrites, connections: relay.connections },
    requests,
    elapsedMs: elapsed(),
  })}\n`,
);
process.exit(0);
