/**
 * The console's audit log: one JSON line per action (and per login / refused action) with the
 * user, appended to `console.auditFile` (mode 0600). Never a password, token or session id:
 * entries are built from named fields only.
 */
import { appendFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";

export interface AuditEntry {
  readonly user: string;
  readonly role?: string | undefined;
  /** login, login-failed, logout, backup, verify, restore, restore-test, refused. */
  readonly action: string;
  readonly vm?: string | undefined;
  /** What was asked: mode, restore point, target, name, … (no secrets). */
  readonly detail?: Readonly<Record<string, unknown>> | undefined;
  /** published (with the command id), done, refused, failed. */
  readonly result: string;
  readonly id?: string | undefined;
  readonly message?: string | undefined;
  /** The client's address. */
  readonly from?: string | undefined;
}

export interface AuditLog {
  record(e: AuditEntry): Promise<void>;
}

export function createAuditLog(o: { file: string; clock?: () => Date; onError?: (err: unknown) => void }): AuditLog {
  let ready: Promise<unknown> | undefined;
  // One append at a time, so lines never interleave.
  let queue: Promise<void> = Promise.resolve();
  return {
    record(e) {
      ready ??= mkdir(dirname(o.file), { recursive: true, mode: 0o700 });
      const line = `${JSON.stringify({ time: (o.clock?.() ?? new Date()).toISOString(), ...e })}\n`;
      queue = queue
        .then(() => ready)
        .then(() => appendFile(o.file, line, { mode: 0o600 }))
        .catch((err: unknown) => o.onError?.(err));
      return queue;
    },
  };
}
