import { PermanentError, TransientError } from "../../contracts/errors.ts";

/**
 * The backup store refused something: a bad name or path (STORE_BAD_PATH), a manifest or image
 * that is not what Ferry writes (STORE_MANIFEST_INVALID, STORE_HOSTILE_IMAGE), a missing file
 * (STORE_FILE_MISSING), a layer already recorded (STORE_LAYER_RECORDED), an unknown VM
 * (STORE_VM_NOT_FOUND). Nothing was changed when one of these is thrown before a write.
 */
export class StoreError extends PermanentError {}

/** Another process holds the VM's store lock (a backup or retention run): retry later. */
export class StoreBusyError extends TransientError {
  constructor(vmName: string, holder: string, options?: { cause?: unknown }) {
    super("STORE_BUSY", `the store folder of VM ${vmName} is locked by ${holder}; retry later`, { vm: vmName, holder }, { ...options, retryAfterMs: 5000 });
  }
}

/** Reading back a stored chain found data that does not match its recorded digests. */
export class VerifyMismatchError extends PermanentError {}
