import { NbdUsageError } from "./errors.ts";

/**
 * NBD addresses as tickets and tools write them:
 *   nbd:unix:/run/x.sock[:exportname=name]   (qemu legacy syntax, used in imageio tickets)
 *   nbd:host:port[:exportname=name]
 *   nbd://host:port/name, nbd+unix:///name?socket=/run/x.sock   (NBD URI spec)
 */
export interface NbdAddress {
  socket?: string;
  host?: string;
  port?: number;
  exportName: string;
}

const LEGACY_UNIX = /^nbd:unix:(\/[^:]+)(?::exportname=(.*))?$/s;
const LEGACY_TCP = /^nbd:(.+):(\d+)(?::exportname=(.*))?$/s;

export function parseNbdUrl(url: string): NbdAddress {
  let m = LEGACY_UNIX.exec(url);
  if (m) return { socket: m[1]!, exportName: m[2] ?? "" };
  if (url.startsWith("nbd://") || url.startsWith("nbd+unix://")) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new NbdUsageError("NBD_BAD_URL", "invalid NBD URL");
    }
    const exportName = decodeURIComponent(u.pathname.replace(/^\//, ""));
    if (u.protocol === "nbd+unix:") {
      const socket = u.searchParams.get("socket");
      if (!socket) throw new NbdUsageError("NBD_BAD_URL", "nbd+unix URL without ?socket=");
      return { socket, exportName };
    }
    return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : 10809, exportName };
  }
  m = LEGACY_TCP.exec(url);
  if (m) return { host: m[1]!, port: Number(m[2]), exportName: m[3] ?? "" };
  throw new NbdUsageError("NBD_BAD_URL", "unsupported NBD URL (expected nbd:unix:/path[:exportname=name])");
}

/** The legacy form imageio tickets carry. */
export function formatNbdUnixUrl(socket: string, exportName = ""): string {
  return exportName ? `nbd:unix:${socket}:exportname=${exportName}` : `nbd:unix:${socket}`;
}
