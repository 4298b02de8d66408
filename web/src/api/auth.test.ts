// The token logic against the real grpc-web transport, with a fake gateway behind `fetch`: it
// refuses a change without the right token as the gateway does (HTTP 401, its JSON error),
// and answers everything else in grpc-web.
import { readFileSync } from "node:fs";
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { describe, expect, it } from "vitest";
import { FarmService, ListLoadTestsResponseSchema, RunLoadTestResponseSchema, ServerActionKind, ServerActionResponseSchema } from "../gen/farm/v1/farm_pb";
import { CHANGING_CALLS, NO_TOKEN, TOKEN_KEY, tokenInterceptor, tokenProblem, TokenPrompt, TokenStore, withGatewayErrors } from "./auth";
import { errorText } from "./client";

const TOKEN = "s3cret-farm-token-0123456789";
const REFUSAL = "this gateway listens beyond loopback: a change needs the farm's token, as `Authorization: Bearer <token>`";

/** sessionStorage's part that the store uses, in a Map. */
function memoryStorage(): Storage & { map: Map<string, string> } {
  const map = new Map<string, string>();
  return {
    map,
    get length() {
      return map.size;
    },
    clear: () => map.clear(),
    key: (i: number) => [...map.keys()][i] ?? null,
    getItem: (k: string) => map.get(k) ?? null,
    setItem: (k: string, v: string) => void map.set(k, v),
    removeItem: (k: string) => void map.delete(k),
  };
}

function frame(flag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = flag;
  new DataView(out.buffer).setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

/** A grpc-web answer: the messages, then the OK trailer. */
function grpcWeb<D extends DescMessage>(schema: D, messages: MessageInitShape<D>[]): Response {
  const parts = messages.map((m) => frame(0, toBinary(schema, create(schema, m))));
  parts.push(frame(0x80, new TextEncoder().encode("grpc-status: 0\r\n")));
  return new Response(new Blob(parts as BlobPart[]), { status: 200, headers: { "content-type": "application/grpc-web+proto" } });
}

interface Sent {
  path: string;
  authorization: string | null;
}

/**
 * A gateway listening beyond loopback: changes need `Bearer TOKEN`; ServerAction answers one
 * outcome, RunLoadTest two progress messages, ListLoadTests an empty list.
 */
function fakeGateway() {
  const sent: Sent[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const path = new URL(String(input)).pathname;
    const authorization = new Headers(init?.headers).get("authorization");
    sent.push({ path, authorization });
    if (CHANGING_CALLS.has(path) && authorization !== `Bearer ${TOKEN}`) {
      return new Response(JSON.stringify({ error: { status: 401, code: "unauthenticated", message: REFUSAL } }), {
        status: 401,
        headers: { "content-type": "application/json" },
      });
    }
    if (path.endsWith("/ServerAction")) return grpcWeb(ServerActionResponseSchema, [{ outcomes: [{ serverId: 4, ok: true }] }]);
    if (path.endsWith("/RunLoadTest")) {
      return grpcWeb(RunLoadTestResponseSchema, [
        { runId: "lt-1", done: false },
        { runId: "lt-1", done: true },
      ]);
    }
    if (path.endsWith("/ListLoadTests")) return grpcWeb(ListLoadTestsResponseSchema, [{}]);
    return new Response(null, { status: 404 });
  };
  return { sent, fetch };
}

/** A client over the grpc-web transport, with the token logic and `answers` as the user. */
function setup(answers: (string | null)[], storage = memoryStorage()) {
  const gateway = fakeGateway();
  const tokens = new TokenStore(storage);
  const asked: (string | null)[] = [];
  const ask = async (refused: string | null) => {
    asked.push(refused);
    return answers.length ? answers.shift()! : null;
  };
  const transport = createGrpcWebTransport({
    baseUrl: "http://127.0.0.1:8000",
    useBinaryFormat: true,
    interceptors: [tokenInterceptor(tokens, ask)],
    fetch: withGatewayErrors(gateway.fetch),
  });
  return { client: createClient(FarmService, transport), sent: gateway.sent, asked, tokens, storage };
}

const stop = { serverIds: [4], action: ServerActionKind.STOP };

describe("TokenStore", () => {
  it("keeps the token in the storage given, trimmed, and forgets it", () => {
    const storage = memoryStorage();
    const store = new TokenStore(storage);
    expect(store.get()).toBeNull();
    store.set(`  ${TOKEN}\n`);
    expect(storage.map.get(TOKEN_KEY)).toBe(TOKEN);
    expect(new TokenStore(storage).get()).toBe(TOKEN); // a reload of the tab finds it
    store.clear();
    expect(store.get()).toBeNull();
    expect(storage.map.has(TOKEN_KEY)).toBe(false);
  });

  it("falls back to memory when there is no storage, or it refuses", () => {
    const none = new TokenStore();
    none.set(TOKEN);
    expect(none.get()).toBe(TOKEN);
    const refusing = memoryStorage();
    refusing.getItem = () => {
      throw new Error("SecurityError");
    };
    refusing.setItem = () => {
      throw new Error("QuotaExceededError");
    };
    const store = new TokenStore(refusing);
    store.set(TOKEN);
    expect(store.get()).toBe(TOKEN);
  });
});

describe("tokenProblem", () => {
  it("refuses only what no header could carry", () => {
    expect(tokenProblem("  ")).toMatch(/Enter/);
    expect(tokenProblem("two words")).toMatch(/visible ASCII/);
    expect(tokenProblem("jeton-à-moi")).toMatch(/visible ASCII/);
    expect(tokenProblem(` ${TOKEN} `)).toBeNull();
  });
});

describe("TokenPrompt", () => {
  it("asks one question for calls refused together, and answers them all", async () => {
    const prompt = new TokenPrompt();
    let changes = 0;
    prompt.subscribe(() => changes++);
    const a = prompt.ask(null);
    const b = prompt.ask("refused");
    expect(prompt.getSnapshot()).toMatchObject({ refused: null });
    expect(changes).toBe(1);
    prompt.answer(` ${TOKEN} `);
    expect(await Promise.all([a, b])).toEqual([TOKEN, TOKEN]);
    expect(prompt.getSnapshot()).toBeNull();
    // The next question is a new one.
    const c = prompt.ask(REFUSAL);
    const question = prompt.getSnapshot();
    expect(question).toMatchObject({ refused: REFUSAL });
    prompt.answer(null);
    expect(await c).toBeNull();
    expect(changes).toBe(4);
  });
});

describe("tokenInterceptor over grpc-web", () => {
  it("on a 401, asks for the token, keeps it, sends the call again, and sends it on later calls", async () => {
    const { client, sent, asked, storage } = setup([TOKEN]);
    const r = await client.serverAction(stop);
    expect(r.outcomes).toMatchObject([{ serverId: 4, ok: true }]);
    expect(asked).toEqual([null]); // asked once, with nothing refused yet
    expect(sent.map((s) => s.authorization)).toEqual([null, `Bearer ${TOKEN}`]);
    expect(storage.map.get(TOKEN_KEY)).toBe(TOKEN);
    // Later calls, reads too, carry it without asking.
    await client.serverAction(stop);
    await client.listLoadTests({});
    expect(asked).toHaveLength(1);
    expect(sent.slice(2).map((s) => s.authorization)).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
  });

  it("asks again with the gateway's message when the token is wrong", async () => {
    const { client, sent, asked } = setup(["wrong-token-0123456789", TOKEN]);
    await client.serverAction(stop);
    expect(asked).toEqual([null, REFUSAL]);
    expect(sent.map((s) => s.authorization)).toEqual([null, "Bearer wrong-token-0123456789", `Bearer ${TOKEN}`]);
  });

  it("forgets a kept token the gateway refuses, and asks with its message", async () => {
    const storage = memoryStorage();
    storage.setItem(TOKEN_KEY, "an-old-farms-token-0123");
    const { client, asked, tokens } = setup([TOKEN], storage);
    await client.serverAction(stop);
    expect(asked).toEqual([REFUSAL]);
    expect(tokens.get()).toBe(TOKEN);
  });

  it("fails the call with a clear message when the user cancels", async () => {
    const { client, sent, asked, tokens } = setup([null]);
    const e = await client.serverAction(stop).catch((e: unknown) => e);
    expect(e).toBeInstanceOf(ConnectError);
    expect((e as ConnectError).code).toBe(Code.Unauthenticated);
    expect(errorText(e)).toBe(NO_TOKEN);
    expect(asked).toHaveLength(1);
    expect(sent).toHaveLength(1); // not sent again
    expect(tokens.get()).toBeNull();
  });

  it("shows the gateway's message, not 'HTTP 401', for a refusal", async () => {
    const gateway = fakeGateway();
    const client = createClient(FarmService, createGrpcWebTransport({ baseUrl: "http://127.0.0.1:8000", useBinaryFormat: true, fetch: withGatewayErrors(gateway.fetch) }));
    const e = await client.serverAction(stop).catch((e: unknown) => e);
    expect((e as ConnectError).code).toBe(Code.Unauthenticated);
    expect(errorText(e)).toBe(REFUSAL);
  });

  it("sends a streamed change (RunLoadTest) again with its request", async () => {
    const { client, sent, asked } = setup([TOKEN]);
    const runs: string[] = [];
    for await (const p of client.runLoadTest({ spec: { path: "/", totalRequests: 10n, concurrency: 1 } })) runs.push(`${p.runId}:${p.done}`);
    expect(runs).toEqual(["lt-1:false", "lt-1:true"]);
    expect(asked).toHaveLength(1);
    expect(sent.map((s) => s.authorization)).toEqual([null, `Bearer ${TOKEN}`]);
  });

  it("asks once for changes refused together", async () => {
    const prompt = new TokenPrompt();
    const gateway = fakeGateway();
    const transport = createGrpcWebTransport({
      baseUrl: "http://127.0.0.1:8000",
      useBinaryFormat: true,
      interceptors: [tokenInterceptor(new TokenStore(memoryStorage()), prompt.ask)],
      fetch: withGatewayErrors(gateway.fetch),
    });
    const client = createClient(FarmService, transport);
    let questions = 0;
    prompt.subscribe(() => {
      if (prompt.getSnapshot()) questions++;
    });
    const calls = [client.serverAction(stop), client.serverAction(stop), client.serverAction(stop)];
    await eventually(() => gateway.sent.length === 3 && prompt.getSnapshot() !== null);
    prompt.answer(TOKEN);
    const results = await Promise.all(calls);
    expect(results.every((r) => r.outcomes[0]?.ok)).toBe(true);
    expect(questions).toBe(1);
    expect(gateway.sent.filter((s) => s.authorization === `Bearer ${TOKEN}`)).toHaveLength(3);
  });

  it("leaves reads alone: no question, no retry", async () => {
    const { client, sent, asked } = setup([TOKEN]);
    await client.listLoadTests({});
    expect(asked).toEqual([]);
    expect(sent).toEqual([{ path: "/farm.v1.FarmService/ListLoadTests", authorization: null }]);
  });
});

describe("CHANGING_CALLS", () => {
  it("are the calls proto/src/auth.rs names", () => {
    const rust = readFileSync(new URL("../../../proto/src/auth.rs", import.meta.url), "utf8");
    const list = /CHANGING_CALLS: \[&str; \d+\] = \[([^\]]*)\]/.exec(rust)?.[1] ?? "";
    const paths = [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
    expect(paths.length).toBeGreaterThan(0);
    expect([...CHANGING_CALLS].sort()).toEqual(paths.sort());
  });
});

async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
}
