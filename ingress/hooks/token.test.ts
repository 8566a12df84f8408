import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearerChecker, HooksTokenError, HooksTokenInvalidError, HooksTokenMissingError, resolveHooksToken } from "./token.ts";

const TOKEN = "t0k3n-for-the-hooks-test-0123456789";
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-hooks-token-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("hooks token", () => {
  it("bearer - only the exact token passes; scheme case-insensitive; missing, other schemes and prefixes fail", () => {
    const ok = bearerChecker(TOKEN);
    expect(ok(`Bearer ${TOKEN}`)).toBe(true);
    expect(ok(`bearer ${TOKEN}`)).toBe(true);
    expect(ok(undefined)).toBe(false);
    expect(ok("")).toBe(false);
    expect(ok(`Bearer ${TOKEN}x`)).toBe(false);
    expect(ok(`Bearer ${TOKEN.slice(0, -1)}`)).toBe(false);
    expect(ok(`Basic ${TOKEN}`)).toBe(false);
    expect(ok(TOKEN)).toBe(false);
    expect(ok("Bearer ")).toBe(false);
  });

  it("source - $FERRY_HOOKS_TOKEN wins over the file; the file is trimmed; a readable file is warned about", async () => {
    const file = join(dir, "token");
    await writeFile(file, `${TOKEN}\n`, { mode: 0o600 });
    expect(await resolveHooksToken({ env: { FERRY_HOOKS_TOKEN: "env-token-0123456789" }, tokenFile: file })).toEqual({ token: "env-token-0123456789", source: "$FERRY_HOOKS_TOKEN" });
    expect(await resolveHooksToken({ env: {}, tokenFile: file })).toEqual({ token: TOKEN, source: file });
    await chmod(file, 0o644);
    expect((await resolveHooksToken({ env: {}, tokenFile: file })).warning).toMatch(/mode 0644.*chmod 600/);
  });

  it("refusals - no token, a missing file, a short token and one with spaces say what to do", async () => {
    await expect(resolveHooksToken({ env: {} })).rejects.toThrow(new HooksTokenMissingError("no token: set $FERRY_HOOKS_TOKEN or hooks.tokenFile in the config (the endpoint never runs without one)"));
    await expect(resolveHooksToken({ env: {}, tokenFile: join(dir, "nope") })).rejects.toThrow(/does not exist/);
    await expect(resolveHooksToken({ env: { FERRY_HOOKS_TOKEN: "short" } })).rejects.toThrow(/shorter than 16 characters \(make one: openssl rand -hex 32\)/);
    await expect(resolveHooksToken({ env: { FERRY_HOOKS_TOKEN: "has a space in the token" } })).rejects.toBeInstanceOf(HooksTokenError);
  });

  it("refusal types - no token and an unreadable file are missing (ferry hooks serve: exit 3); a bad token is invalid (exit 4)", async () => {
    await expect(resolveHooksToken({ env: {} })).rejects.toBeInstanceOf(HooksTokenMissingError);
    await expect(resolveHooksToken({ env: { FERRY_HOOKS_TOKEN: "  " } })).rejects.toBeInstanceOf(HooksTokenMissingError);
    await expect(resolveHooksToken({ env: {}, tokenFile: join(dir, "nope") })).rejects.toBeInstanceOf(HooksTokenMissingError);
    await expect(resolveHooksToken({ env: { FERRY_HOOKS_TOKEN: "short" } })).rejects.toBeInstanceOf(HooksTokenInvalidError);
    await expect(resolveHooksToken({ env: { FERRY_HOOKS_TOKEN: "has a space in the token" } })).rejects.toBeInstanceOf(HooksTokenInvalidError);
  });
});
