// A page written as a frontend developer would write it against the infrahaus API from the same origin:
// fetch with the session cookie (HttpOnly, sent by the browser) and the CSRF header on unsafe requests,
// problem+json errors shown next to the form fields, progress through EventSource, a dashboard fed by the
// global event stream, and a conditional GET. Everything it sees goes into `window.report`, which the
// harness reads.
//
// Both streams send unnamed events: every item reaches `onmessage`, and its JSON `type` says what it is
// (`step`, `log`, `created`, `failed`, `done`, ...). Nothing needs a list of names, and `onerror` only ever
// means a connection problem.

const params = new URLSearchParams(location.search);
const report = {
  origin: location.origin,
  login: null,
  sessionCookieVisible: null,
  me: null,
  csrfMissing: null,
  node: null,
  validation: null,
  created: null,
  stream: { opens: [], connectionErrors: [], events: [], done: null, closedByServer: false },
  dashboard: { opens: 0, items: [] },
  conditional: null,
  final: null,
  failure: null,
  finished: false,
};
window.report = report;

let csrf = null;
const $ = (selector) => document.querySelector(selector);

async function call(method, path, body, { withCsrf = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (withCsrf && csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const type = response.headers.get("content-type") ?? "";
  const data = type.includes("json") ? await response.json() : await response.text();
  return {
    status: response.status,
    contentType: type,
    location: response.headers.get("location"),
    etag: response.headers.get("etag"),
    requestId: response.headers.get("x-request-id"),
    data,
  };
}

function fail(where, error) {
  report.failure = `${where}: ${error instanceof Error ? error.message : JSON.stringify(error)}`;
  $("#status").textContent = report.failure;
  report.finished = true;
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const login = await call("POST", "/api/auth/login", {
      username: form.get("username"),
      password: form.get("password"),
    });
    report.login = { status: login.status, auth: login.data.auth ?? null };
    if (login.status !== 200) return fail("login", login.data);
    csrf = login.data.csrf_token;
    report.sessionCookieVisible = document.cookie.includes("session");
    const me = await call("GET", "/api/auth/me");
    report.me = { status: me.status, userid: me.data.user?.userid ?? null, auth: me.data.auth ?? null };
    $("#who").textContent = `Logged in as ${report.me.userid}`;
    watchDashboard();
    // The same write without the CSRF header: a cookie session refuses it.
    const bare = await call("POST", "/api/nodes/probe", { host: "127.0.0.1", port: 1 }, { withCsrf: false });
    report.csrfMissing = { status: bare.status, code: bare.data.code ?? null };
    $("#register").disabled = false;
  } catch (error) {
    fail("login", error);
  }
});

$("#register").addEventListener("click", async () => {
  try {
    const port = Number(params.get("pve_port"));
    const probe = await call("POST", "/api/nodes/probe", { host: "127.0.0.1", port });
    if (probe.status !== 200) return fail("probe", probe.data);
    const node = await call("POST", "/api/nodes", {
      name: "demo",
      host: "127.0.0.1",
      port,
      token_id: "root@pam!infrahaus",
      token_secret: "demo-token-secret",
      tls_fingerprint: probe.data.fingerprint_sha256,
      ssh_port: Number(params.get("ssh_port")),
      ssh_username: "root",
      ssh_password: "demo",
    });
    report.node = { status: node.status, id: node.data.id ?? null, name: node.data.name ?? null };
    if (node.status !== 201) return fail("register", node.data);
    $("#node").textContent = `Node ${node.data.name} registered`;
    $("#create button").disabled = false;
  } catch (error) {
    fail("register", error);
  }
});

$("#create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  for (const slot of document.querySelectorAll(".field-error")) slot.textContent = "";
  try {
    const templates = await call("GET", "/api/templates?q=web-hello");
    const template = templates.data.items.find((t) => t.name === "web-hello");
    // Only what the user chose: every other field has a server default.
    const body = { template_id: template.id, hostname: form.get("hostname") };
    if (form.get("vmid")) body.vmid = Number(form.get("vmid"));
    const created = await call("POST", "/api/containers", body);
    if (created.status === 422) {
      showProblem(created);
      return;
    }
    report.created = {
      status: created.status,
      containerId: created.data.container?.id ?? null,
      operationId: created.data.operation?.id ?? null,
      location: created.location,
    };
    if (created.status !== 202) return fail("create", created.data);
    follow(created.data.container.id);
  } catch (error) {
    fail("create", error);
  }
});

function showProblem(answer) {
  const problem = answer.data;
  const shown = {};
  for (const error of problem.errors ?? []) {
    const slot = document.querySelector(`.field-error[data-field="${error.field}"]`);
    if (slot) {
      slot.textContent = error.message;
      shown[error.field] = slot.textContent;
    }
  }
  $("#form-error").textContent = problem.detail;
  report.validation = {
    requestId: answer.requestId,
    status: answer.status,
    contentType: answer.contentType,
    code: problem.code ?? null,
    detail: problem.detail ?? null,
    errors: problem.errors ?? null,
    shown,
  };
}

// The dashboard: one stream for every container of the user, opened right after login. Each item carries the
// container's state after it, so the page never asks again.
function watchDashboard() {
  const source = new EventSource("/api/events/stream");
  source.onopen = () => (report.dashboard.opens += 1);
  source.onmessage = (event) => {
    const item = JSON.parse(event.data);
    report.dashboard.items.push({
      id: Number(event.lastEventId),
      type: item.type,
      containerId: item.container_id,
      lifecycle: item.container?.lifecycle ?? null,
      status: item.container?.status ?? null,
      operation: item.operation ? { id: item.operation.id, kind: item.operation.kind, status: item.operation.status } : null,
    });
    const row = document.querySelector(`#dashboard [data-id="${item.container_id}"]`) ?? addRow(item.container_id);
    if (item.container) row.textContent = `${item.container_id}: ${item.container.lifecycle}, ${item.container.status ?? "?"}`;
  };
  window.dashboard = source;
}

function addRow(containerId) {
  const row = document.createElement("li");
  row.dataset.id = containerId;
  $("#dashboard").append(row);
  return row;
}

function follow(containerId) {
  const source = new EventSource(`/api/containers/${containerId}/progress`);
  const list = $("#progress");
  const started = performance.now();
  source.onopen = () => report.stream.opens.push(Math.round(performance.now() - started));
  source.onmessage = (event) => {
    const item = JSON.parse(event.data);
    if (item.type === "done") {
      report.stream.done = { lastEventId: event.lastEventId, ...item };
      // Deliberately left open: the server ends the stream, the browser reconnects with the last id, and the
      // server's 204 stops the EventSource for good (a page would usually close() here).
      return;
    }
    report.stream.events.push({ id: Number(event.lastEventId), type: item.type });
    const entry = document.createElement("li");
    entry.textContent = `${event.lastEventId} ${item.type} ${item.message ?? item.line ?? ""}`;
    list.append(entry);
  };
  source.onerror = () => {
    report.stream.connectionErrors.push({
      at: Math.round(performance.now() - started),
      readyState: source.readyState, // 0 = CONNECTING: the browser reconnects by itself; 2 = CLOSED for good
      lastSeen: report.stream.events.at(-1)?.id ?? null,
    });
    if (source.readyState === EventSource.CLOSED && report.stream.done) {
      report.stream.closedByServer = true;
      finish(containerId, report.stream.done);
    }
  };
}

async function finish(containerId, done) {
  try {
    const container = await call("GET", `/api/containers/${containerId}`);
    const operation = await call("GET", `/api/operations/${done.operation_id}`);
    // A conditional GET: the finished operation does not change, so its ETag still matches.
    const again = await fetch(`/api/operations/${done.operation_id}`, {
      headers: { "If-None-Match": operation.etag },
      cache: "no-store",
    });
    report.conditional = { etag: operation.etag, status: again.status, etagAgain: again.headers.get("etag") };
    report.final = {
      lifecycle: container.data.lifecycle ?? null,
      status: container.data.status ?? null,
      operationStatus: operation.data.status ?? null,
      operationKind: operation.data.kind ?? null,
    };
    $("#status").textContent = `${container.data.hostname}: ${report.final.lifecycle}, ${report.final.status}`;
  } catch (error) {
    fail("finish", error);
    return;
  }
  report.finished = true;
}
