// The grpc-web client of farm.v1.FarmService, generated from proto/ (src/gen) and spoken
// in the binary format, which is what the gateway's tonic-web accepts. The gateway serves
// the page and the API on one origin; `npm run dev` proxies the API to the gateway. Where
// the gateway listens beyond loopback, changes carry the farm's token (see auth.ts).
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { FarmService } from "../gen/farm/v1/farm_pb";
import { toWatchUpdate, type WatchUpdate } from "../state/model";
import { tokenInterceptor, TokenPrompt, TokenStore, withGatewayErrors } from "./auth";

function sessionStore(): Storage | undefined {
  try {
    return typeof window === "undefined" ? undefined : window.sessionStorage;
  } catch {
    return undefined;
  }
}

/** Asks the user for the farm's token; components/TokenDialog shows the question. */
export const tokenPrompt = new TokenPrompt();

const transport = createGrpcWebTransport({
  baseUrl: typeof window === "undefined" ? "http://127.0.0.1:8000" : window.location.origin,
  useBinaryFormat: true,
  interceptors: [tokenInterceptor(new TokenStore(sessionStore()), tokenPrompt.ask)],
  fetch: withGatewayErrors((input, init) => globalThis.fetch(input, init)),
});

export const farmClient = createClient(FarmService, transport);

/** How often the controller may send Watch messages, in ms (`?interval=` overrides). */
function watchInterval(): number {
  const raw = typeof window === "undefined" ? null : new URLSearchParams(window.location.search).get("interval");
  const n = raw ? Number(raw) : 250;
  return Number.isFinite(n) ? Math.min(1000, Math.max(50, n)) : 250;
}

export async function* openWatch(signal: AbortSignal): AsyncIterable<WatchUpdate> {
  for await (const message of farmClient.watch({ minIntervalMs: watchInterval() }, { signal })) {
    yield toWatchUpdate(message);
  }
}

/** A short, human message for a failed call; the code ("[unimplemented]") when it has none. */
export function errorText(e: unknown): string {
  if (e && typeof e === "object" && "rawMessage" in e && typeof (e as { rawMessage: unknown }).rawMessage === "string") {
    const raw = (e as { rawMessage: string }).rawMessage;
    if (raw) return raw;
  }
  return e instanceof Error ? e.message : String(e);
}
