/**
 * Console sessions: random ids (32 bytes) held in memory, each with its own CSRF token. A
 * session ends after `idleMs` without a request, at logout, or when the process restarts
 * (everyone logs in again: no session survives in a file where it could leak).
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Identity } from "./users.ts";

export interface Session extends Identity {
  readonly id: string;
  /** Put in every form; a POST must send it back. */
  readonly csrf: string;
  lastSeen: number;
}

export interface Sessions {
  create(who: Identity): Session;
  /** The live session of this id (touched), or undefined. */
  get(id: string | undefined): Session | undefined;
  destroy(id: string | undefined): void;
}

const token = () => randomBytes(32).toString("base64url");

export function createSessions(o: { idleMs: number; clock?: () => number }): Sessions {
  const now = o.clock ?? Date.now;
  const byId = new Map<string, Session>();
  const sweep = () => {
    const t = now();
    for (const [id, s] of byId) if (t - s.lastSeen > o.idleMs) byId.delete(id);
  };
  return {
    create(who) {
      sweep();
      const s: Session = { id: token(), csrf: token(), user: who.user, role: who.role, lastSeen: now() };
      byId.set(s.id, s);
      return s;
    },
    get(id) {
      if (!id) return undefined;
      const s = byId.get(id);
      if (!s) return undefined;
      if (now() - s.lastSeen > o.idleMs) {
        byId.delete(id);
        return undefined;
      }
      s.lastSeen = now();
      return s;
    },
    destroy(id) {
      if (id) byId.delete(id);
    },
  };
}

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(session: Session, submitted: unknown): boolean {
  if (typeof submitted !== "string") return false;
  const a = Buffer.from(submitted);
  const b = Buffer.from(session.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}
