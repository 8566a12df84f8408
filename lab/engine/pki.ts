import type { ServerResponse } from "node:http";
import { X509Certificate } from "node:crypto";
import { opensshPublicKey, type LabPki } from "../ca.ts";
import { sendText } from "./http.ts";

/**
 * `GET /ovirt-engine/services/pki-resource?resource=...&format=...` (ovirt-api.md §3). No
 * authentication; served on both the TLS and the plain HTTP listener (clients bootstrap trust so).
 */
const RESOURCES = ["ca-certificate", "engine-certificate", "qemu-ca-certificate"] as const;
const FORMATS = ["X509-PEM", "X509-PEM-CA", "OPENSSH-PUBKEY"] as const;

export function handlePkiResource(res: ServerResponse, url: URL, pki: () => LabPki): void {
  const resource = url.searchParams.get("resource") ?? "";
  const format = url.searchParams.get("format") ?? "X509-PEM-CA";
  if (!(RESOURCES as readonly string[]).includes(resource)) return sendText(res, 400, `Resource '${resource}' is invalid\n`);
  if (!(FORMATS as readonly string[]).includes(format)) return sendText(res, 400, `Format '${format}' is invalid\n`);
  const p = pki();
  const pem = resource === "engine-certificate" ? p.certPem : p.caPem;
  if (format === "OPENSSH-PUBKEY") {
    const name = new X509Certificate(pem).subject.split("\n").find((l) => l.startsWith("CN="))?.slice(3) ?? "";
    return sendText(res, 200, opensshPublicKey(pem, name), { "Content-Type": "text/plain" });
  }
  const type = format === "X509-PEM-CA" ? "application/x-x509-ca-cert" : "application/x-x509-cert";
  res.writeHead(200, { "Content-Type": type, "Content-Length": Buffer.byteLength(pem) });
  res.end(pem);
}
