import { PermanentError, TransientError } from "../../contracts/errors.ts";

/**
 * A chain record, a name or a request about restore points is wrong. Codes:
 * CHAIN_INVALID (a record breaks an invariant), STORE_BAD_NAME, CHAIN_BAD_TIME,
 * RESTORE_POINT_NOT_FOUND, CHAIN_PARENT_MISSING, CHAIN_DUPLICATE, CHAIN_PENDING.
 */
export class ChainError extends PermanentError {}

/** Someone else changed the chain record first (KV compare-and-set lost): re-read and retry. */
export class ChainConflictError extends TransientError {
  constructor(vmId: string, expectedRevision: number | undefined, options?: { cause?: unknown }) {
    super(
      "CHAIN_CONFLICT",
      `chain record of VM ${vmId} changed concurrently (expected revision ${expectedRevision ?? "none"}); re-read and retry`,
      { vmId, expectedRevision },
      { ...options, retryAfterMs: 200 },
    );
  }
}
