/**
 * Checking an engine user's password with the engine's own SSO (password grant): a token means
 * yes, an AuthError means no; anything else (engine down, TLS) is an error the login page shows
 * as "the engine could not be asked". The token is dropped at once.
 */
import { AuthError, createEngineClient } from "../adapters/ovirt/mod.ts";

export interface SsoEngine {
  readonly name: string;
  readonly url: string;
  readonly caPem?: string | undefined;
  readonly insecure?: boolean | undefined;
}

export class SsoUnavailableError extends Error {
  override readonly name = "SsoUnavailableError";
}

export function ssoChecker(engine: SsoEngine): (user: string, password: string) => Promise<boolean> {
  return async (user, password) => {
    const client = createEngineClient({ url: engine.url, user, password, caPem: engine.caPem, insecure: engine.insecure ?? false, correlationId: "ferry-console-login" });
    try {
      await client.login();
      return true;
    } catch (err) {
      if (err instanceof AuthError) return false;
      throw new SsoUnavailableError(`engine ${engine.name} could not be asked: ${(err as Error).message.split("\n")[0]}`);
    } finally {
      await client.close().catch(() => undefined);
    }
  };
}
