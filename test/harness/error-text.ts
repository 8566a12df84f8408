import { inspect } from "node:util";

/**
 * Every string reachable from an error: message, stack, fields and the whole cause chain. Tests
 * that promise "no secret in any error" search this text, so a secret tucked into a cause or a
 * field is found too.
 */
export function errorText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && depth < 10; depth++) {
    parts.push(String(e), inspect(e, { depth: 5 }), JSON.stringify(e) ?? "");
    if (e instanceof Error) parts.push(e.message, e.stack ?? "");
    e = (e as { cause?: unknown }).cause;
  }
  return parts.join("\n");
}

/** The rejection of `p`; fails when `p` resolves. */
export async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}
