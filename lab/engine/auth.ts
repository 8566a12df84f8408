import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * API authentication (ovirt-api.md §2): `Authorization: Bearer <SSO token>`, Basic
 * (`admin@internal:password`), or the JSESSIONID cookie of a `Prefer: persistent-auth` session.
 * A failure is the servlet container's 401: an HTML body (not JSON) and `WWW-Authenticate: Basic realm="RESTAPI"`.
 */
export class Sessions {
  private readonly tokens = new Map<string, { user: string; lastUsed: number }>();

  private readonly users: ReadonlyMap<string, string>;
  private readonly idleMs: () => number;
  constructor(
    users: ReadonlyMap<string, string>,
    idleMs: () => number,
  ) {
    this.users = users;
    this.idleMs = idleMs;
  }

  /** Check a user name and password; the name is split at the last '@' into user and profile. */
  checkPassword(user: string, password: string): boolean {
    const expected = this.users.get(user);
    if (expected === undefined) return false;
    const a = Buffer.from(expected);
    const b = Buffer.from(password);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  issue(user: string): string {
    const token = randomBytes(48).toString("base64url");
    this.tokens.set(token, { user, lastUsed: Date.now() });
    return token;
  }

  revoke(token: string): boolean {
    return this.tokens.delete(token);
  }

  /** Expire every token (the control API uses it to test re-authentication). */
  revokeAll(): number {
    const n = this.tokens.size;
    this.tokens.clear();
    return n;
  }

  use(token: string): string | undefined {
    const s = this.tokens.get(token);
    if (!s) return undefined;
    if (Date.now() - s.lastUsed > this.idleMs()) {
      this.tokens.delete(token);
      return undefined;
    }
    s.lastUsed = Date.now();
    return s.user;
  }

  /** The authenticated user of a request, or undefined. Sets a JSESSIONID when persistent auth is asked for. */
  authenticate(req: IncomingMessage, res: ServerResponse): string | undefined {
    const header = req.headers.authorization ?? "";
    let user: string | undefined;
    let viaCredentials = false;
    const bearer = /^Bearer\s+(\S+)$/i.exec(header);
    const basic = /^Basic\s+(\S+)$/i.exec(header);
    if (bearer?.[1]) {
      user = this.use(bearer[1]);
    } else if (basic?.[1]) {
      const decoded = Buffer.from(basic[1], "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) {
        const name = decoded.slice(0, colon);
        if (this.checkPassword(name, decoded.slice(colon + 1))) {
          user = name;
          viaCredentials = true;
        }
      }
    } else {
      const cookie = /(?:^|;\s*)JSESSIONID=([^;]+)/.exec(req.headers.cookie ?? "");
      if (cookie?.[1]) user = this.use(cookie[1]);
    }
    const prefer = String(req.headers.prefer ?? "");
    if (user && viaCredentials && /persistent-auth/i.test(prefer)) {
      const session = this.issue(user);
      res.setHeader("Set-Cookie", `JSESSIONID=${session}; Path=/ovirt-engine/api; Secure; HttpOnly`);
    }
    return user;
  }
}

export function sendUnauthorized(res: ServerResponse): void {
  const body =
    "<html><head><title>Error</title></head><body><h1>401 - Unauthorized</h1></body></html>";
  res.writeHead(401, {
    "WWW-Authenticate": 'Basic realm="RESTAPI"',
    "Content-Type": "text/html;charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}
