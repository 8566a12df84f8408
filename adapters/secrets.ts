/**
 * Redaction of the secrets Ferry handles: imageio ticket URLs (the ticket id in the path is
 * the only credential), bearer tokens and passwords. Adapters run every message they put into
 * an error through `redactText`, and the logger redacts the same shapes again.
 */
const TICKET_PATH = /(\/images\/)([A-Za-z0-9._~-]{4,})/g;
const BEARER = /(Bearer\s+)[A-Za-z0-9._~+/=-]+/gi;
const BASIC = /(Basic\s+)[A-Za-z0-9+/=]+/gi;
// A quoted value runs to its closing quote (spaces, commas and \" included) or to the end of a
// truncated text; an unquoted one to the next delimiter.
const PASSWORD_QUOTED = /("?(?:password|passwd|access_token|token|secret)"?\s*[:=]\s*")((?:[^"\\]|\\.)*)("?)/gi;
const PASSWORD_FIELD = /("?(?:password|passwd|access_token|token|secret)"?\s*[:=]\s*"?)([^"&\s,;)}\]]+)/gi;
const URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)([^/@\s:]+):([^/@\s]+)@/gi;

export const REDACTED = "***";

export function redactText(text: string): string {
  return text
    .replace(TICKET_PATH, (_m, p: string, id: string) => (id === "*" ? `${p}*` : `${p}${REDACTED}`))
    .replace(BEARER, `$1${REDACTED}`)
    .replace(BASIC, `$1${REDACTED}`)
    .replace(PASSWORD_QUOTED, `$1${REDACTED}$3`)
    .replace(PASSWORD_FIELD, `$1${REDACTED}`)
    .replace(URL_USERINFO, `$1$2:${REDACTED}@`);
}

/** A transfer URL safe to show: scheme, host and port only. */
export function redactUrl(url: string | URL): string {
  try {
    const u = typeof url === "string" ? new URL(url) : url;
    return redactText(`${u.protocol}//${u.host}${u.pathname}`);
  } catch {
    return REDACTED;
  }
}
