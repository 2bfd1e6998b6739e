// A small typed client, written the way a frontend developer would: types generated from the served OpenAPI
// document by openapi-typescript (into ./generated/api.d.ts, next to this file when the test compiles it) and
// calls through openapi-fetch. It is compiled with `tsc --strict`, never run: what is tested is that the
// generated types describe the operations well enough to write this without casts or `any`.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./generated/api";

type Schemas = components["schemas"];
export type Problem = Schemas["ProblemDetail"];
export type Operation = Schemas["OperationRead"];
/** One `data:` of a container's progress stream: an audit event, a log line or the end. */
export type ProgressItem = Schemas["ContainerProgressItem"];
/** One `data:` of the global stream (`/api/events/stream`). */
export type StreamEvent = Schemas["EventRead"];

export class ApiProblem extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.code}: ${problem.detail}`);
  }

  /** Per-field messages a form can show next to its inputs. */
  fieldMessages(): Map<string, string> {
    return new Map((this.problem.errors ?? []).map((e) => [e.field, e.message]));
  }

  /** Wrong username or password (show the form again) — not a lost session (go to the login page). */
  get badLogin(): boolean {
    return this.problem.code === "invalid_credentials";
  }
}

export function connect(baseUrl: string) {
  // Same-origin page: the session cookie travels by itself; `include` also covers a CORS deployment.
  return createClient<paths>({ baseUrl, credentials: "include" });
}

export type Api = ReturnType<typeof connect>;

/** Cookie login: keeps the CSRF token the answer carries and sends it on every unsafe request from now on. */
export async function login(api: Api, username: string, password: string): Promise<Schemas["SessionInfo"]> {
  // `realm` has a server default: optional in the generated type.
  const { data, error } = await api.POST("/api/auth/login", { body: { username, password } });
  if (error) throw new ApiProblem(error);
  const csrf = data.csrf_token;
  if (csrf === null) throw new Error("a cookie login always answers a CSRF token");
  const withCsrf: Middleware = {
    onRequest({ request }) {
      if (!["GET", "HEAD", "OPTIONS"].includes(request.method)) request.headers.set("X-CSRF-Token", csrf);
      return request;
    },
  };
  api.use(withCsrf);
  return data;
}

export async function templateNamed(api: Api, name: string): Promise<Schemas["TemplateSummary"]> {
  const { data, error } = await api.GET("/api/templates", { params: { query: { q: name, limit: 10 } } });
  if (error) throw new ApiProblem(error);
  const found = data.items.find((t) => t.name === name);
  if (!found) throw new Error(`no template named ${name}`);
  return found;
}

export async function createFromTemplate(
  api: Api,
  template: Schemas["TemplateSummary"],
  hostname: string,
): Promise<Schemas["ContainerCreated"]> {
  const { data, error, response } = await api.POST("/api/containers", {
    // Everything but the hostname has a server default (from the template or built in).
    body: { template_id: template.id, hostname },
    params: { header: { "Idempotency-Key": `create-${hostname}` } },
  });
  if (error) throw new ApiProblem(error);
  if (response.status !== 202) throw new Error(`expected 202 Accepted, got ${response.status}`);
  return data;
}

const TERMINAL: ReadonlySet<Operation["status"]> = new Set(["succeeded", "failed", "cancelled"]);

export async function readOperation(api: Api, operationId: string): Promise<Operation> {
  const { data, error } = await api.GET("/api/operations/{operation_id}", {
    params: { path: { operation_id: operationId } },
  });
  if (error) throw new ApiProblem(error);
  return data;
}

export function isFinished(operation: Operation): boolean {
  return TERMINAL.has(operation.status);
}

/** A conditional GET: answers `null` when the container did not change since `etag` (304, no body sent). */
export async function containerIfChanged(
  api: Api,
  containerId: string,
  etag: string | null,
): Promise<{ container: Schemas["ContainerDetail"]; etag: string | null } | null> {
  const { data, error, response } = await api.GET("/api/containers/{container_id}", {
    params: { path: { container_id: containerId }, header: etag ? { "If-None-Match": etag } : {} },
  });
  if (response.status === 304) return null;
  if (error) throw new ApiProblem(error);
  return { container: data, etag: response.headers.get("ETag") };
}

/** What a page shows for one progress item; the `type` narrows the union, so each branch sees its own fields. */
export function describe(item: ProgressItem): string {
  switch (item.type) {
    case "log":
      return `${item.step}${item.script ? `/${item.script}` : ""}: ${item.line}`;
    case "done":
      return `finished: ${item.status ?? "nothing to follow"}`;
    case "step":
      return `${item.operation?.progress ?? 0}% ${item.message}`;
    case "failed":
      return `failed: ${item.message}`;
    default:
      return item.message;
  }
}

/** Follow a container's progress in a browser: every item arrives at `onmessage` (none is a named event). */
export function followProgress(containerId: string, onItem: (item: ProgressItem) => void): EventSource {
  const source = new EventSource(`/api/containers/${containerId}/progress`, { withCredentials: true });
  source.onmessage = (event: MessageEvent<string>) => {
    const item = JSON.parse(event.data) as ProgressItem;
    onItem(item);
    // The server ends the stream after `done`; closing spares the reconnect (which would be answered 204).
    if (item.type === "done") source.close();
  };
  return source;
}

/** A dashboard's one stream: the container's state after each event, whatever container it is. */
export function watchContainers(onChange: (id: string, state: NonNullable<StreamEvent["container"]>) => void) {
  const source = new EventSource("/api/events/stream", { withCredentials: true });
  source.onmessage = (event: MessageEvent<string>) => {
    const item = JSON.parse(event.data) as StreamEvent;
    if (item.container !== null) onChange(item.container_id, item.container);
  };
  return source;
}

/** What a page shows for a failed operation: its error's message when there is one. */
export function failureText(operation: Operation): string | null {
  if (operation.status !== "failed") return null;
  return operation.error?.detail ?? operation.message ?? "failed";
}

// The generated types must be precise enough to reject mistakes; each line below has to be a compile error
// (an unused `@ts-expect-error` fails the build), so types that degrade to `any` or `string` fail the test.
export async function mistakesTheTypesCatch(api: Api): Promise<void> {
  // @ts-expect-error an unknown path
  await api.GET("/api/container");
  // @ts-expect-error hostname is a string
  await api.POST("/api/containers", { body: { hostname: 42 } });
  // @ts-expect-error the login body needs a password
  await api.POST("/api/auth/login", { body: { username: "root@pam", realm: "pam" } });
  // @ts-expect-error the path parameter is required
  await api.GET("/api/operations/{operation_id}", {});
  const operation = await readOperation(api, "00000000-0000-0000-0000-000000000000");
  // @ts-expect-error status is an enum, not any string
  const unknownStatus: typeof operation.status = "done";
  // @ts-expect-error kind is an enum too
  const unknownKind: typeof operation.kind = "reboot";
  // @ts-expect-error so is a failure's code
  const unknownFailure: NonNullable<typeof operation.error>["code"] = "oops";
  // @ts-expect-error and a problem's code
  const unknownProblem: Problem["code"] = "something_else";
  // @ts-expect-error and a field error's code
  const unknownFieldCode: NonNullable<Problem["errors"]>[number]["code"] = "bad";
  // @ts-expect-error no event is called `error` (a browser would mistake it for a dropped connection)
  const errorEvent: StreamEvent["type"] = "error";
  // @ts-expect-error a log line has no `message`: the union is narrowed by `type`
  const narrowed = (item: ProgressItem) => (item.type === "log" ? item.message : "");
  void [unknownStatus, unknownKind, unknownFailure, unknownProblem, unknownFieldCode, errorEvent, narrowed];
}
