import type { IncomingMessage, ServerResponse } from "node:http";
import type { Sessions } from "./auth.ts";
import { readBody, sendJson } from "./http.ts";

/**
 * The engine SSO token endpoint (ovirt-api.md §2.1): `POST /ovirt-engine/sso/oauth/token`, form
 * fields (or a query string), `Accept` exactly `application/json`. With the API scope the errors
 * are `{error_code, error}` with HTTP 400; other scopes get the OAuth `{error, error_description}`.
 */
export async function handleSsoToken(req: IncomingMessage, res: ServerResponse, url: URL, sessions: Sessions): Promise<void> {
  const form = new URLSearchParams(url.search);
  if (req.method === "POST") {
    const body = (await readBody(req, 64 * 1024)).toString("utf8");
    for (const [k, v] of new URLSearchParams(body)) form.set(k, v);
  } else if (req.method !== "GET") {
    res.writeHead(405, { Allow: "GET, POST", "Content-Length": 0 });
    res.end();
    return;
  }
  const scope = form.get("scope") ?? "";
  const apiScope = scope.split(/\s+/).includes("ovirt-app-api");
  const fail = (code: string, message: string) =>
    sendJson(res, 400, apiScope ? { error_code: code, error: message } : { error: code, error_description: message });

  if (req.headers.accept !== "application/json") return fail("invalid_request", "Missing parameter: 'Accept Header'");
  const grant = form.get("grant_type");
  if (!grant) return fail("invalid_request", "Missing parameter: 'grant_type'");
  if (grant !== "password") return fail("unsupported_grant_type", `The grant type '${grant}' is not supported.`);
  if (!scope) return fail("invalid_request", "Missing parameter: 'scope'");
  if (!apiScope) return fail("invalid_scope", `The requested scope '${scope}' is not valid.`);
  const username = form.get("username");
  const password = form.get("password");
  if (!username) return fail("invalid_request", "Missing parameter: 'username'");
  if (password === null) return fail("invalid_request", "Missing parameter: 'password'");
  const at = username.lastIndexOf("@");
  const name = at > 0 ? username.slice(0, at) : username;
  const profile = at > 0 ? username.slice(at + 1) : "";
  if (!profile || !sessions.checkPassword(username, password)) {
    return fail(
      "access_denied",
      `Cannot authenticate user '${name}@${profile}': Unable to log in. Verify your login information or contact the system administrator..`,
    );
  }
  const token = sessions.issue(username);
  sendJson(res, 200, {
    access_token: token,
    token_type: "bearer",
    scope: "ovirt-app-api ovirt-ext=token-info:validate",
    exp: "9223372036854775807",
  });
}

/** `POST /ovirt-engine/services/sso-logout` (form: scope, token). */
export async function handleSsoLogout(req: IncomingMessage, res: ServerResponse, url: URL, sessions: Sessions): Promise<void> {
  const form = new URLSearchParams(url.search);
  if (req.method === "POST") for (const [k, v] of new URLSearchParams((await readBody(req, 64 * 1024)).toString())) form.set(k, v);
  const token = form.get("token");
  if (token) sessions.revoke(token);
  sendJson(res, 200, {});
}
