/**
 * The subset of the engine search language the lab understands: `name=web01`, `name=web*`,
 * `id=<uuid>`, `status=up`, `alias=x`, joined with `and`; `sortby ...` and `page N` are ignored.
 * Text without `=` matches when any searchable field contains it (events: the description).
 */
export interface SearchOptions {
  caseSensitive: boolean;
}

function wildcard(pattern: string, caseSensitive: boolean): RegExp {
  const body = pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
  return new RegExp(`^${body}$`, caseSensitive ? "" : "i");
}

export function matchesSearch(
  search: string | null,
  fields: Record<string, string | undefined>,
  o: SearchOptions = { caseSensitive: true },
): boolean {
  if (!search || !search.trim()) return true;
  const cleaned = search.replace(/\s+sortby\s+.*$/i, "").replace(/\s+page\s+\d+\s*$/i, "").trim();
  if (!cleaned) return true;
  const terms = cleaned.split(/\s+and\s+/i);
  return terms.every((term) => {
    const m = /^\s*([\w.]+)\s*(!=|=)\s*(.*?)\s*$/.exec(term);
    if (!m) {
      const needle = o.caseSensitive ? term.trim() : term.trim().toLowerCase();
      return Object.values(fields).some((v) => v !== undefined && (o.caseSensitive ? v : v.toLowerCase()).includes(needle));
    }
    const key = m[1]!.toLowerCase();
    const value = m[3]!.replace(/^"(.*)"$/, "$1");
    const actual = fields[key];
    const hit = actual !== undefined && wildcard(value, o.caseSensitive).test(actual);
    return m[2] === "=" ? hit : !hit;
  });
}

/** `case_sensitive` (default true) and `max` from the query. */
export function searchParams(q: URLSearchParams): { search: string | null; caseSensitive: boolean; max: number | undefined } {
  const cs = q.get("case_sensitive");
  const max = q.get("max");
  return {
    search: q.get("search"),
    caseSensitive: cs === null ? true : cs.toLowerCase() !== "false",
    max: max !== null && /^\d+$/.test(max) ? Number(max) : undefined,
  };
}
