/**
 * Slows password guessing: after `maxFailures` failed logins of one user name within
 * `windowMs`, further attempts for that name are refused for `lockMs` without checking any
 * password (the engine's SSO is not asked either). A successful login clears the count.
 */
export interface LoginThrottle {
  /** Seconds to wait before this name may try again; 0 when it may try now. */
  waitSeconds(user: string): number;
  failed(user: string): void;
  succeeded(user: string): void;
}

export function createLoginThrottle(o: { maxFailures?: number; windowMs?: number; lockMs?: number; clock?: () => number } = {}): LoginThrottle {
  const max = o.maxFailures ?? 5;
  const windowMs = o.windowMs ?? 15 * 60_000;
  const lockMs = o.lockMs ?? 60_000;
  const now = o.clock ?? Date.now;
  const byUser = new Map<string, { failures: number[]; lockedUntil: number }>();
  return {
    waitSeconds(user) {
      const e = byUser.get(user);
      return e && e.lockedUntil > now() ? Math.ceil((e.lockedUntil - now()) / 1000) : 0;
    },
    failed(user) {
      const t = now();
      const e = byUser.get(user) ?? { failures: [], lockedUntil: 0 };
      e.failures = [...e.failures.filter((f) => t - f < windowMs), t];
      if (e.failures.length >= max) {
        e.lockedUntil = t + lockMs;
        e.failures = [];
      }
      byUser.set(user, e);
      // Bounded memory: forget the oldest name when guessing sprays many names.
      if (byUser.size > 10_000) byUser.delete(byUser.keys().next().value!);
    },
    succeeded(user) {
      byUser.delete(user);
    },
  };
}
