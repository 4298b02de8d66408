// The farm's token, for a gateway that listens beyond loopback: there every call that changes
// the farm needs it as `Authorization: Bearer <token>`, and the gateway answers one without it
// with HTTP 401. On loopback (the default) no call needs it and nothing here asks for it.
//
// The token is asked for once, when a change is refused (TokenPrompt, shown by
// components/TokenDialog), kept for the tab's life in sessionStorage (TokenStore), sent on
// every later call, and the refused call is sent again with it (tokenInterceptor).
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** The calls that need the token: `farm_proto::auth::CHANGING_CALLS` (proto/src/auth.rs). */
export const CHANGING_CALLS: ReadonlySet<string> = new Set([
  "/farm.v1.FarmService/ServerAction",
  "/farm.v1.FarmService/SimulateLoad",
  "/farm.v1.FarmService/ScaleFarm",
  "/farm.v1.FarmService/Broadcast",
  "/farm.v1.FarmService/RunLoadTest",
  "/farm.v1.FarmService/StartLoadTest",
  "/farm.v1.FarmService/StopLoadTest",
  "/farm.v1.FarmService/SetFaults",
  "/farm.v1.FarmService/ClearFaults",
  "/farm.v1.FarmService/RunScenario",
  "/farm.v1.FarmService/StartScenario",
  "/farm.v1.FarmService/StopScenario",
]);

/** Where the farm keeps its token, for the dialog that asks for it. */
export const TOKEN_FILE = "~/.local/share/farm/token";

/** The message of a change that failed because the user gave no token. */
export const NO_TOKEN =
  "no token given: this gateway listens beyond loopback, and a change needs the farm's token";

export const TOKEN_KEY = "farm.token";

type TokenStorage = Pick<Storage, "getItem" | "setItem" | "removeItem">;

/**
 * The token for this tab: in sessionStorage when there is one (it then survives a reload but
 * not the tab), else in memory.
 */
export class TokenStore {
  private memory: string | null = null;

  constructor(private readonly storage?: TokenStorage) {}

  get(): string | null {
    try {
      if (this.storage) return this.storage.getItem(TOKEN_KEY) || null;
    } catch {
      // Storage refused: memory serves.
    }
    return this.memory;
  }

  set(token: string): void {
    this.memory = token.trim();
    try {
      this.storage?.setItem(TOKEN_KEY, this.memory);
    } catch {
      // Storage refused or full: the token then lasts until the page closes.
    }
  }

  clear(): void {
    this.memory = null;
    try {
      this.storage?.removeItem(TOKEN_KEY);
    } catch {
      // Nothing kept there.
    }
  }
}

/**
 * What is wrong with `text` as a token, or null. Only what the browser itself would refuse is
 * checked (a header holds visible ASCII only); the gateway judges the rest.
 */
export function tokenProblem(text: string): string | null {
  const t = text.trim();
  if (!t) return "Enter the farm's token.";
  if (!/^[\x21-\x7e]+$/.test(t)) return "A farm token holds only visible ASCII characters, without spaces.";
  return null;
}

/** One open question to the user. `refused` is the gateway's message when it refused a token. */
export interface TokenQuestion {
  id: number;
  refused: string | null;
}

/**
 * The question "which token?", asked of whoever shows it (the dialog): one at a time, so that
 * calls refused together wait for the same answer. Subscribable, for useSyncExternalStore.
 */
export class TokenPrompt {
  private question: TokenQuestion | null = null;
  private waiting: Promise<string | null> | null = null;
  private resolve: ((token: string | null) => void) | null = null;
  private nextId = 1;
  private readonly listeners = new Set<() => void>();

  /** Resolves to the token the user gave, or null when they cancelled. */
  ask = (refused: string | null): Promise<string | null> => {
    if (this.waiting) return this.waiting;
    this.question = { id: this.nextId++, refused };
    this.waiting = new Promise((resolve) => {
      this.resolve = resolve;
    });
    this.emit();
    return this.waiting;
  };

  /** The user's answer: a token, or null for cancel. */
  answer = (token: string | null): void => {
    const resolve = this.resolve;
    this.question = null;
    this.waiting = null;
    this.resolve = null;
    this.emit();
    resolve?.(token === null ? null : token.trim());
  };

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): TokenQuestion | null => this.question;

  private emit(): void {
    for (const l of this.listeners) l();
  }
}

function unauthenticated(e: unknown): e is ConnectError {
  return e instanceof ConnectError && e.code === Code.Unauthenticated;
}

function authorize(header: Headers, token: string | null): void {
  if (token) header.set("authorization", `Bearer ${token}`);
  else header.delete("authorization");
}

async function* replay<T>(items: T[]): AsyncIterable<T> {
  yield* items;
}

/**
 * Sends the token, when there is one, on every call. A change the gateway refuses for want of
 * it (Unauthenticated) asks for the token (`ask`, once for calls refused together), keeps it,
 * and is sent again with it; a token refused too is forgotten and asked for again, with the
 * gateway's message. Cancelling fails the call with NO_TOKEN.
 */
export function tokenInterceptor(tokens: TokenStore, ask: (refused: string | null) => Promise<string | null>): Interceptor {
  return (next) => async (req) => {
    let sent = tokens.get();
    authorize(req.header, sent);
    if (!CHANGING_CALLS.has(`/${req.service.typeName}/${req.method.name}`)) return next(req);
    // A streamed request's messages are read by each attempt: keep them to send again
    // (grpc-web streams only responses, so there is one message).
    let attempt = () => req;
    if (req.stream && req.method.methodKind === "server_streaming") {
      const messages: MessageShape<DescMessage>[] = [];
      for await (const m of req.message) messages.push(m);
      attempt = () => ({ ...req, message: replay(messages) });
    }
    let refusal: ConnectError;
    try {
      return await next(attempt());
    } catch (e) {
      if (!unauthenticated(e)) throw e;
      refusal = e;
    }
    for (;;) {
      let token = tokens.get();
      // A token given meanwhile (for another call) is tried first; else the user is asked.
      if (token === null || token === sent) {
        if (sent !== null) tokens.clear();
        token = await ask(sent === null ? null : refusal.rawMessage);
        if (token === null) throw new ConnectError(NO_TOKEN, Code.Unauthenticated);
        tokens.set(token);
        token = tokens.get() ?? token;
      }
      sent = token;
      authorize(req.header, sent);
      try {
        return await next(attempt());
      } catch (e) {
        if (!unauthenticated(e)) throw e;
        refusal = e;
      }
    }
  };
}

/**
 * `fetch` that reads the gateway's own errors: a refusal before the call reaches the farm
 * (401 without the token, 403 from another origin) is the gateway's JSON error,
 * `{"error": {"message": ...}}`, which grpc-web does not read; its message is passed on as
 * `grpc-message`, so that the call fails with it rather than with "HTTP 401".
 */
export function withGatewayErrors(base: typeof fetch): typeof fetch {
  return async (input, init) => {
    const response = await base(input, init);
    const type = response.headers.get("content-type") ?? "";
    if (response.ok || response.headers.has("grpc-message") || !type.startsWith("application/json")) return response;
    let message: unknown;
    try {
      message = ((await response.json()) as { error?: { message?: unknown } }).error?.message;
    } catch {
      message = undefined;
    }
    const headers = new Headers(response.headers);
    headers.delete("content-length");
    if (typeof message === "string" && message) headers.set("grpc-message", encodeURIComponent(message));
    return new Response(null, { status: response.status, statusText: response.statusText, headers });
  };
}
