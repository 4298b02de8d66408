import { describe, expect, it } from "vitest";
import { parseIds } from "./ids";

describe("parseIds", () => {
  it("reads ids and ranges, sorted and unique", () => {
    expect(parseIds("1-3, 8 2,, 10")).toEqual({ ids: [1, 2, 3, 8, 10], error: null });
    expect(parseIds("")).toEqual({ ids: [], error: null });
  });
  it("names what it cannot read", () => {
    expect(parseIds("1, x").error).toContain('"x"');
    expect(parseIds("5-2").error).toContain("ranges go up");
    expect(parseIds("0").error).toContain("start at 1");
    expect(parseIds("1-20000").error).toContain("at most");
  });
});
