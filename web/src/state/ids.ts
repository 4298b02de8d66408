// "1-5, 8 12" → [1, 2, 3, 4, 5, 8, 12]: the id lists the forms accept.

export const MAX_IDS = 10_000;

export function parseIds(text: string): { ids: number[]; error: string | null } {
  const ids = new Set<number>();
  for (const part of text.split(/[\s,]+/).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return { ids: [], error: `"${part}" is not an id or a range like 3-7` };
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (from < 1 || to < from) return { ids: [], error: `"${part}": ids start at 1 and ranges go up` };
    if (to - from + ids.size >= MAX_IDS) return { ids: [], error: `at most ${MAX_IDS} ids` };
    for (let i = from; i <= to; i++) ids.add(i);
  }
  return { ids: [...ids].sort((a, b) => a - b), error: null };
}
