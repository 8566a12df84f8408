/**
 * Field schemas shared by several contracts. Every check here must be expressible in JSON
 * Schema (no refine/transform): the committed JSON Schema files are generated from these and
 * are what shell and nats CLI publishers rely on.
 */
import { z } from "zod";

/** Patterns with the sentence an operator sees when a value does not match (see validation.ts). */
export const patternMessages = new Map<string, string>();

function pattern(regex: RegExp, message: string): RegExp {
  patternMessages.set(regex.source, message);
  return regex;
}

const NAME_CHARS = pattern(
  /^[A-Za-z0-9._-]+$/,
  "may contain only letters, digits, '.', '_' and '-' (no '/', spaces or other characters)",
);
const NOT_DOT = pattern(/^(?!\.{1,2}$)/, "must not be '.' or '..'");
const RELATIVE_PATH = pattern(
  /^(?!\/)(?!(?:.*\/)?\.\.(?:\/|$))[^\0]+$/,
  "must be a path relative to the store (no leading '/', no '..' segment)",
);
const CODE = pattern(/^[A-Za-z][A-Za-z0-9_.-]*$/, "must be an error code like TRANSFER_TIMEOUT");
const HEX = pattern(/^[0-9a-f]+$/, "must be lowercase hex");

/** A VM name or id: safe as one path segment in the store and in a NATS-free file name. */
export const vmRef = z
  .string()
  .min(1)
  .max(255)
  .regex(NAME_CHARS)
  .regex(NOT_DOT)
  .describe("VM name or id: 1-255 characters of A-Z a-z 0-9 . _ -, not '.' or '..'.");

/** A configured engine name (`prd`, `dr`, or any name from the config file). */
export const engineName = z
  .string()
  .min(1)
  .max(64)
  .regex(NAME_CHARS)
  .regex(NOT_DOT)
  .describe("Engine name from the Ferry config file, e.g. 'prd' or 'dr'.");

export const id = z.string().min(1).max(255);
export const isoTime = z.iso.datetime({ offset: true }).describe("ISO-8601 date-time, e.g. 2025-01-31T02:00:00Z.");
export const errorCode = z.string().min(1).max(64).regex(CODE).describe("Stable error code (contracts/errors.ts).");
export const relativePath = z.string().min(1).max(4096).regex(RELATIVE_PATH);
export const nonNegInt = z.number().int().nonnegative();

/** Envelope of events Ferry produces: all three are set by the publisher. */
export const envelope = {
  id: id.describe("Unique event id; also the JetStream Nats-Msg-Id, so re-publishing is de-duplicated."),
  time: isoTime.describe("When the event was produced (ISO-8601)."),
  correlationId: id.describe("Follows one backup or restore through all its events."),
} as const;

/** Envelope of inbound commands: optional, because a human types them. The runtime fills them in. */
export const commandEnvelope = {
  id: envelope.id
    .optional()
    .describe("Optional. Default: the Nats-Msg-Id header if present, else '<stream>:<sequence>'. Also the JetStream msgID."),
  time: envelope.time.optional().describe("Optional. Default: the time JetStream stored the message."),
  correlationId: envelope.correlationId.optional().describe("Optional. Default: the event id."),
} as const;

export const vmIdentity = z
  .object({ id: id.describe("VM id on the engine."), name: vmRef.describe("VM name.") })
  .describe("The VM, by id and name.");

export const backupKind = z.enum(["full", "incremental"]);

export const layer = z
  .object({
    path: relativePath.describe("Path of the qcow2 layer, relative to the backup store."),
    size: nonNegInt.describe("Size of the layer file in bytes."),
    parent: relativePath.optional().describe("Relative path of the backing layer; absent for a full layer."),
  })
  .describe("One qcow2 layer in the store.");

export const checksum = z
  .object({
    algorithm: z.literal("sha256"),
    blockSize: z.number().int().positive().describe("Block size of the imageio block checksum, in bytes."),
    value: z.string().min(1).max(256).regex(HEX).describe("Hex digest (imageio block checksum of the guest image)."),
  })
  .describe("imageio-compatible block checksum of the whole guest image.");
