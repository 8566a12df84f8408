/**
 * imageio extents (ovirt-api.md §7.7): validated (contiguous from 0, no overlap) and merged
 * (neighbours with the same flags become one), so callers can plan copies without rechecking.
 */
import { z } from "zod";

export type ExtentContext = "zero" | "dirty";

export interface Extent {
  readonly start: number;
  readonly length: number;
  /** Reads as zeroes. */
  readonly zero: boolean;
  /** Unallocated in this layer (shallow exports only). Always false for `dirty` extents. */
  readonly hole: boolean;
  /** Changed since the backup's from_checkpoint (context=dirty). Always false for `zero` extents. */
  readonly dirty: boolean;
}

const RawExtent = z.object({
  start: z.number().int().nonnegative(),
  length: z.number().int().nonnegative(),
  zero: z.boolean().optional(),
  hole: z.boolean().optional(),
  dirty: z.boolean().optional(),
});
const RawExtents = z.array(RawExtent);

/** Validates imageio's extents JSON for `context`; returns merged extents or a problem description. */
export function parseExtents(body: unknown, context: ExtentContext): { extents: Extent[] } | { problem: string } {
  const parsed = RawExtents.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { problem: `extents are not a valid array: ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "?"}` };
  }
  const out: Extent[] = [];
  let end = 0;
  for (const [i, e] of parsed.data.entries()) {
    if (e.start !== end) return { problem: `extent ${i} starts at ${e.start}, expected ${end} (gap or overlap)` };
    if (context === "dirty" && e.dirty === undefined) return { problem: `extent ${i} has no "dirty" flag` };
    if (context === "zero" && e.zero === undefined) return { problem: `extent ${i} has no "zero" flag` };
    end = e.start + e.length;
    if (!Number.isSafeInteger(end)) return { problem: `extent ${i} ends beyond 2^53` };
    if (e.length === 0) continue;
    const next: Extent = {
      start: e.start,
      length: e.length,
      // Old servers leave out `zero` in dirty extents: treat as data (ovirt-api.md §7.7).
      zero: e.zero ?? false,
      hole: context === "zero" ? (e.hole ?? false) : false,
      dirty: context === "dirty" ? (e.dirty ?? false) : false,
    };
    const last = out.at(-1);
    if (last && last.zero === next.zero && last.hole === next.hole && last.dirty === next.dirty) {
      out[out.length - 1] = { ...last, length: last.length + next.length };
    } else {
      out.push(next);
    }
  }
  return { extents: out };
}

/** The image size an extent list covers (imageio has no size field; the end of the last extent is it). */
export function extentsSize(extents: readonly Extent[]): number {
  const last = extents.at(-1);
  return last ? last.start + last.length : 0;
}
