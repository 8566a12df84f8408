import { PermanentError, TransientError } from "../../contracts/errors.ts";

/** qemu-img or qemu-nbd exited with an error we have no finer meaning for. */
export class QemuToolError extends PermanentError {
  constructor(tool: string, op: string, exitCode: number | undefined, stderr: string, options?: { cause?: unknown }) {
    super("QEMU_TOOL_FAILED", `${tool} ${op} failed (exit ${exitCode ?? "?"}): ${stderr || "no output"}`, {
      tool, op, exitCode, stderr,
    }, options);
  }
}

/** A qemu tool ran past its time limit (an untrusted image that makes qemu spin is the usual suspect). */
export class QemuTimeoutError extends PermanentError {
  constructor(tool: string, op: string, timeoutMs: number) {
    super("QEMU_TIMEOUT", `${tool} ${op} did not finish within ${timeoutMs} ms`, { tool, op, timeoutMs });
  }
}

/** `qemu-img check` exit 1: the check itself could not complete (I/O error, image unreadable). */
export class QemuCheckIncompleteError extends PermanentError {
  readonly result?: CheckResultLike | undefined;
  constructor(path: string, detail: string, result?: CheckResultLike) {
    super("QEMU_CHECK_INCOMPLETE", `qemu-img check could not complete on ${path}: ${detail}`, { path });
    this.result = result;
  }
}

/** `qemu-img check` exit 2: the image is corrupt. */
export class QemuImageCorruptError extends PermanentError {
  readonly result: CheckResultLike;
  constructor(path: string, result: CheckResultLike) {
    super("QEMU_IMAGE_CORRUPT", `image ${path} is corrupt (${result.corruptions ?? "?"} corruptions)`, {
      path, corruptions: result.corruptions, leaks: result.leaks,
    });
    this.result = result;
  }
}

/** `qemu-img check` exit 3: leaked clusters only; data is intact, space is wasted. */
export class QemuImageLeaksError extends PermanentError {
  readonly result: CheckResultLike;
  constructor(path: string, result: CheckResultLike) {
    super("QEMU_IMAGE_LEAKS", `image ${path} has ${result.leaks ?? "?"} leaked clusters`, { path, leaks: result.leaks });
    this.result = result;
  }
}

/** `qemu-img check` exit 63: the format has no consistency check (raw). */
export class QemuCheckUnsupportedError extends PermanentError {
  constructor(path: string, format: string) {
    super("QEMU_CHECK_UNSUPPORTED", `qemu-img check does not support format ${format} (${path})`, { path, format });
  }
}

/** qemu-nbd did not come up, or died while starting. Often transient (socket dir busy, lock held). */
export class QemuNbdStartError extends TransientError {
  constructor(message: string, fields: Record<string, unknown> = {}) {
    super("QEMU_NBD_START_FAILED", message, fields);
  }
}

/** The fields of `qemu-img check --output=json` the errors keep. */
export interface CheckResultLike {
  corruptions?: number;
  leaks?: number;
  checkErrors?: number;
}
