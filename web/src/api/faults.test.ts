// The fault calls through the dashboard's real client (grpc-web, the token logic), with a fake
// gateway behind `fetch` that records what it was sent.
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ClearFaultsRequestSchema, ClearFaultsResponseSchema, SetFaultsRequestSchema, SetFaultsResponseSchema } from "../gen/farm/v1/farm_pb";
import { ConnectionFaultMode, FaultKind } from "../gen/farm/v1/faults_pb";
import { describeOutcome } from "./actions";
import { errorText } from "./client";
import { clearFaults, DEFAULT_FAULT_FORM, faultFromForm, faultName, setFaults, type FaultFormValues } from "./faults";

const form = (over: Partial<FaultFormValues>): FaultFormValues => ({ ...DEFAULT_FAULT_FORM, ...over });

/** The profile the form describes, as plain JSON-like data. */
function profileOf(over: Partial<FaultFormValues>) {
  const r = faultFromForm(form(over));
  if ("error" in r) throw new Error(r.error);
  return r.profile;
}

describe("faultFromForm", () => {
  it("builds one fault of the kind chosen, with its main values", () => {
    expect(profileOf({ kind: "latency", delayMs: "200", jitterMs: "50" }).latency).toMatchObject({ delayMs: 200, jitterMs: 50, when: { durationSeconds: 0 } });
    expect(profileOf({ kind: "abort", status: "500", percent: "30" }).abort).toMatchObject({ statuses: [{ status: 500, weight: 1 }], when: { percent: 30 } });
    expect(profileOf({ kind: "hang", maxMs: "5000" }).hang).toMatchObject({ maxMs: 5000 });
    expect(profileOf({ kind: "throughput", bytesPerSecond: "1000" }).throughput).toMatchObject({ bytesPerSecond: 1000 });
    expect(profileOf({ kind: "connection", mode: "close" }).connection).toMatchObject({ mode: ConnectionFaultMode.CLOSE });
    expect(profileOf({ kind: "connection", mode: "reset" }).connection).toMatchObject({ mode: ConnectionFaultMode.RESET });
    expect(profileOf({ kind: "rate_limit", requestsPerSecond: "1000" }).rateLimit).toMatchObject({ requestsPerSecond: 1000 });
    expect(profileOf({ kind: "health", status: "500" }).health).toMatchObject({ status: 500 });
    expect(profileOf({ kind: "readiness" }).readiness).toBeDefined();
    expect(profileOf({ kind: "partition", durationSeconds: "30" }).partition).toMatchObject({ when: { durationSeconds: 30 } });
    const one = profileOf({ kind: "hang" });
    expect([one.latency, one.abort, one.throughput, one.connection, one.rateLimit, one.health, one.readiness, one.partition]).toEqual(Array(8).fill(undefined));
  });

  it("leaves an empty percent unset (every request), and gives a partition none", () => {
    expect(profileOf({ kind: "latency", percent: "" }).latency?.when?.percent).toBeUndefined();
    expect(profileOf({ kind: "latency", percent: " 25.5 ", durationSeconds: "60" }).latency?.when).toMatchObject({ percent: 25.5, durationSeconds: 60 });
    expect(profileOf({ kind: "partition", percent: "50" }).partition?.when?.percent).toBeUndefined();
  });

  it("passes values out of bounds on to the controller, which names the field", () => {
    expect(profileOf({ kind: "abort", percent: "150" }).abort?.when?.percent).toBe(150);
    expect(profileOf({ kind: "latency", delayMs: "999999" }).latency?.delayMs).toBe(999_999);
  });

  it("refuses what a whole-number field cannot carry, and a missing value", () => {
    expect(faultFromForm(form({ kind: "latency", delayMs: "1.5" }))).toEqual({ error: "Delay must be a whole number, 0 or more (got 1.5)" });
    expect(faultFromForm(form({ kind: "latency", delayMs: "-3" }))).toEqual({ error: "Delay must be a whole number, 0 or more (got -3)" });
    expect(faultFromForm(form({ kind: "latency", delayMs: "" }))).toEqual({ error: "Delay is required" });
    expect(faultFromForm(form({ kind: "throughput", bytesPerSecond: "5000000000" }))).toEqual({ error: "Bytes/s is too large (got 5000000000)" });
    expect(faultFromForm(form({ kind: "latency", durationSeconds: "ten" }))).toEqual({ error: "Duration must be a whole number, 0 or more (got ten)" });
    expect(faultFromForm(form({ kind: "abort", percent: "lots" }))).toEqual({ error: "Percent must be a number (got lots)" });
  });
});

function frame(flag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = flag;
  new DataView(out.buffer).setUint32(1, body.length);
  out.set(body, 5);
  return out;
}

function grpcWeb<D extends DescMessage>(schema: D, message: MessageInitShape<D>): Response {
  const parts = [frame(0, toBinary(schema, create(schema, message))), frame(0x80, new TextEncoder().encode("grpc-status: 0\r\n"))];
  return new Response(new Blob(parts as BlobPart[]), { status: 200, headers: { "content-type": "application/grpc-web+proto" } });
}

/** A grpc-web error: only the trailers, in the headers. */
function grpcError(status: number, message?: string): Response {
  const headers: Record<string, string> = { "content-type": "application/grpc-web+proto", "grpc-status": String(status) };
  if (message) headers["grpc-message"] = encodeURIComponent(message);
  return new Response(null, { status: 200, headers });
}

/** Answers the fault calls with `outcomes`, keeping the requests' paths and bodies. */
function fakeGateway(outcomes: { serverId: number; ok: boolean; message?: string }[]) {
  const sent: { path: string; body: Uint8Array }[] = [];
  vi.stubGlobal("fetch", async (input: RequestInfo | URL, init?: RequestInit) => {
    const path = new URL(String(input)).pathname;
    sent.push({ path, body: (init?.body as Uint8Array).subarray(5) });
    if (path.endsWith("/SetFaults")) return grpcWeb(SetFaultsResponseSchema, { outcomes });
    if (path.endsWith("/ClearFaults")) return grpcWeb(ClearFaultsResponseSchema, { outcomes });
    return new Response(null, { status: 404 });
  });
  return sent;
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("setFaults and clearFaults", () => {
  it("sets the faults on the servers by id, and sums up the outcomes", async () => {
    const sent = fakeGateway([
      { serverId: 2, ok: true, message: "faults applied" },
      { serverId: 5, ok: false, message: "the agent did not answer" },
    ]);
    const summary = await setFaults([2, 5], profileOf({ kind: "latency", delayMs: "200", jitterMs: "0", durationSeconds: "30" }));
    expect(summary).toEqual({ ok: 1, failed: [{ id: 5, message: "the agent did not answer" }] });
    expect(sent.map((s) => s.path)).toEqual(["/farm.v1.FarmService/SetFaults"]);
    const request = fromBinary(SetFaultsRequestSchema, sent[0].body);
    expect(request.targets).toMatchObject({ serverIds: [2, 5], all: false, sharePercent: 0 });
    expect(request.faults?.latency).toMatchObject({ delayMs: 200, when: { durationSeconds: 30 } });
    expect(describeOutcome(`Set ${faultName("latency")}`, [2, 5], summary)).toBe("Set latency fault on 2 servers: 1 failed (server-5: the agent did not answer)");
  });

  it("clears the kinds named, or every kind", async () => {
    const sent = fakeGateway([{ serverId: 4, ok: true, message: "faults cleared" }]);
    expect(await clearFaults([4], ["rate_limit", "abort"])).toEqual({ ok: 1, failed: [] });
    expect(await clearFaults([4])).toEqual({ ok: 1, failed: [] });
    const [some, all] = sent.map((s) => fromBinary(ClearFaultsRequestSchema, s.body));
    expect(some.targets?.serverIds).toEqual([4]);
    expect(some.kinds).toEqual([FaultKind.RATE_LIMIT, FaultKind.ABORT]);
    expect(all.kinds).toEqual([]);
    expect(describeOutcome(`Clear ${faultName("rate_limit")}`, [4], { ok: 1, failed: [] })).toBe("Clear rate limit fault: server-4 done");
  });
});

describe("a refused fault call", () => {
  it("fails with the controller's message as it is, naming the field", async () => {
    const message = "faults.abort.when.percent must be 0 to 100, got 150";
    vi.stubGlobal("fetch", async () => grpcError(3, message));
    const e = await setFaults([1], profileOf({ kind: "abort", percent: "150" })).catch((e: unknown) => e);
    expect(errorText(e)).toBe(message);
  });

  it("fails with the code when the answer has no message", async () => {
    vi.stubGlobal("fetch", async () => grpcError(12));
    const e = await clearFaults([1]).catch((e: unknown) => e);
    expect(errorText(e)).toBe("[unimplemented]");
  });
});
