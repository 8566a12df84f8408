import { execa } from "execa";
import { z } from "zod";
import { redactText } from "../secrets.ts";
import { QemuTimeoutError, QemuToolError } from "./errors.ts";

/**
 * Resource limits for a tool run. Used when qemu opens an image Ferry did not write (uploaded by a
 * user, read back from a backup volume someone else could touch): a crafted qcow2 can make qemu-img
 * allocate huge tables or loop, so the run is capped in time (execa `timeout`) and, when `prlimit`
 * is available, in address space and CPU seconds (the limits OpenStack applies to qemu-img info).
 */
export interface ToolLimits {
  timeoutMs: number;
  /** RLIMIT_AS in bytes (needs prlimit). */
  addressSpaceBytes?: number;
  /** RLIMIT_CPU in seconds (needs prlimit). */
  cpuSeconds?: number;
}

export const UNTRUSTED_LIMITS: ToolLimits = Object.freeze({
  timeoutMs: 30_000,
  addressSpaceBytes: 1024 * 1024 * 1024,
  cpuSeconds: 30,
});

export interface RunOptions {
  signal?: AbortSignal;
  limits?: ToolLimits;
  /** Absolute path of prlimit, or false to apply only the time limit. */
  prlimit?: string | false;
  /** Exit codes that are answers, not failures (qemu-img compare: 1 = different). */
  okExitCodes?: readonly number[];
  /** What to name the operation in errors. */
  op: string;
  /** Bytes to feed on stdin (none by default). */
  input?: Buffer;
  /** Called with each piece of stdout as it arrives (e.g. `qemu-img convert -p` progress); stdout is still returned whole. */
  onStdout?: (text: string) => void;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const MAX_STDERR = 2000;

export function cleanStderr(text: string): string {
  const t = redactText(text.trim());
  return t.length > MAX_STDERR ? `${t.slice(0, MAX_STDERR)}…` : t;
}

/** Run `binary args` (argv array, never a shell), applying limits and the abort signal. */
export async function runTool(binary: string, args: readonly string[], o: RunOptions): Promise<RunResult> {
  o.signal?.throwIfAborted();
  let file = binary;
  let argv = [...args];
  const lim = o.limits;
  if (lim && o.prlimit && (lim.addressSpaceBytes || lim.cpuSeconds)) {
    const caps: string[] = [];
    if (lim.addressSpaceBytes) caps.push(`--as=${lim.addressSpaceBytes}`);
    if (lim.cpuSeconds) caps.push(`--cpu=${lim.cpuSeconds}`);
    argv = [...caps, "--", binary, ...argv];
    file = o.prlimit;
  }
  const tool = binary.split("/").pop() ?? binary;
  const child = execa(file, argv, {
    reject: false,
    stripFinalNewline: false,
    ...(o.input ? { input: o.input } : { stdin: "ignore" as const }),
    ...(o.signal ? { cancelSignal: o.signal } : {}),
    ...(lim ? { timeout: lim.timeoutMs } : {}),
    forceKillAfterDelay: 2000,
    env: { LC_ALL: "C" },
  });
  if (o.onStdout) {
    const cb = o.onStdout;
    child.stdout?.on("data", (d: Buffer) => cb(d.toString()));
  }
  const result = await child;
  if (result.isCanceled) {
    throw o.signal?.reason instanceof Error ? o.signal.reason : new DOMException("aborted", "AbortError");
  }
  if (result.timedOut) throw new QemuTimeoutError(tool, o.op, lim?.timeoutMs ?? 0);
  const stdout = String(result.stdout ?? "");
  const stderr = String(result.stderr ?? "");
  const exitCode = typeof result.exitCode === "number" ? result.exitCode : -1;
  if (exitCode === 0 || o.okExitCodes?.includes(exitCode)) return { exitCode, stdout, stderr };
  if (result.failed && exitCode === -1) {
    // Spawn failure (binary missing) or killed by a signal (e.g. RLIMIT_CPU → SIGXCPU, RLIMIT_AS → SIGSEGV/abort).
    const why = result.signal ? `killed by ${result.signal}` : (result.originalMessage ?? result.shortMessage);
    throw new QemuToolError(tool, o.op, undefined, cleanStderr(`${why}\n${stderr}`), { cause: result.cause });
  }
  throw new QemuToolError(tool, o.op, exitCode, cleanStderr(stderr || stdout));
}

/** Parse and validate a tool's JSON output, or fail with the tool's own words. */
export function parseJson<S extends z.ZodType>(tool: string, op: string, text: string, schema: S): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new QemuToolError(tool, op, 0, `unparsable JSON output: ${cleanStderr(text.slice(0, 200))}`, { cause: err });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new QemuToolError(tool, op, 0, `unexpected JSON output: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  }
  return parsed.data;
}
