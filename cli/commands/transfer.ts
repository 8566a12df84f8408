import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { redactText, redactUrl } from "../../adapters/secrets.ts";
import { PermanentError } from "../../contracts/errors.ts";
import {
  BLOCK_SIZE,
  OutputExistsError,
  TransferCancelledError,
  checksumResult,
  digestLocalImage,
  download,
  formatChecksumJson,
  readDigestsFile,
  upload,
  writeDigestsFile,
  type Progress,
} from "../../dataplane/mod.ts";
import { ExitCode, type Command, type CommandIO } from "../command.ts";
import { InputFileMissingError, readInputFile, requireInputFile } from "../input-file.ts";

const usage = `Usage:
  ferry transfer download <transfer-url> <out.qcow2> [--ca FILE] [--incremental --backing FILE]
                          [--previous-digests FILE] [--digests FILE] [--connections N] [--json]
  ferry transfer upload <image> <transfer-url> [--ca FILE] [--format qcow2|raw] [--disk-is-zero]
                          [--connections N] [--json]
  ferry transfer checksum <image> [--format qcow2|raw]

Low-level transfers against any ovirt-imageio server (like oVirt's ovirt-img).

download   Copy the image behind an imageio transfer URL into a new qcow2 layer. With
           --incremental the transfer must be an incremental backup: only dirty ranges are copied
           onto a new layer whose backing file is --backing. <out.qcow2> must not exist.
upload     Send a local image (a qcow2 chain is merged) to an upload transfer URL.
checksum   Print the image's block checksum exactly as imageio's
           GET /images/<ticket>/checksum?algorithm=sha256 returns it.

Options:
  --ca FILE                 PEM CA bundle that signed the imageio server's certificate
  --connections N           parallel HTTP connections (default 4, capped by the server)
  --backing FILE            (download) previous layer, recorded as the backing file
  --previous-digests FILE   (download) block digests of --backing, so clean blocks are not re-read;
                            default: <backing>.digests, <backing without .qcow2>.digests or the
                            store's blockhashes/<checkpoint>.<disk-id>, when one is there
  --digests FILE            (download) write the new layer's block digests here
  --format qcow2|raw        image format (default: read from the image header)
  --disk-is-zero            (upload) the target disk is new and empty: zero ranges are not sent
  --json                    print a JSON summary on stdout
Progress goes to stderr. Transfer URLs are never printed in full (the ticket id is a secret).

Exit: 0 done, 1 the transfer failed, 2 usage, 3 an input file (the image, --backing,
--previous-digests, --ca) missing or the server unreachable, 4 <out.qcow2> exists,
130/143 interrupted (partial output removed).
`;

const MiB = 1024 * 1024;

class UsageError extends Error {}

/** 128 + the signal's number: what a shell reports for a command ended by that signal. */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT;

class InterruptedError extends Error {
  readonly signal: StopSignal;
  constructor(signal: StopSignal) {
    super(`interrupted by ${signal}`);
    this.signal = signal;
  }
}

/**
 * SIGINT and SIGTERM stop the transfer through its abort signal, so the dataplane removes the
 * partial layer and its temp directory and stops its qemu-nbd before the process exits. The
 * listeners stay installed (`on`, not `once`) until that cleanup is done: execa's exit hook
 * (signal-exit, loaded with the first qemu-nbd) acts only when it is the last listener of a
 * signal, and then kills the children and re-raises the signal, ending the process before any
 * cleanup ran. A repeated signal during the cleanup is ignored.
 */
function stopOnSignals(io: CommandIO): { signal: AbortSignal; check(err: unknown): unknown; dispose(): void } {
  const controller = new AbortController();
  let caught: StopSignal | undefined;
  const handlers = (Object.keys(SIGNAL_EXIT) as StopSignal[]).map((name) => {
    const handler = () => {
      caught ??= name;
      if (!controller.signal.aborted) controller.abort(new InterruptedError(name));
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  const follow = () => controller.abort(io.signal.reason);
  if (io.signal.aborted) follow();
  else io.signal.addEventListener("abort", follow, { once: true });
  return {
    signal: controller.signal,
    /** The error to report: an interruption when a signal came, whatever the transfer then failed with. */
    check: (err) => (caught ? new InterruptedError(caught) : err),
    dispose() {
      io.signal.removeEventListener("abort", follow);
      for (const [name, handler] of handlers) process.off(name, handler);
    },
  };
}

function positionals(args: string[], n: number, names: string): string[] {
  if (args.length !== n) throw new UsageError(`expected ${names}`);
  return args;
}

function parseConnections(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--connections must be an integer 1-64, got '${v}'`);
  return n;
}

function parseFormat(v: string | undefined): "qcow2" | "raw" | undefined {
  if (v === undefined || v === "qcow2" || v === "raw") return v;
  throw new UsageError(`--format must be qcow2 or raw, got '${v}'`);
}

function checkUrl(v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new UsageError("the transfer URL is not a valid URL");
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new UsageError("the transfer URL must be http(s)");
  return v;
}

const human = (n: number) => (n >= 1024 * MiB ? `${(n / 1024 / MiB).toFixed(2)} GiB` : `${(n / MiB).toFixed(1)} MiB`);

/** A bar on a TTY; otherwise a plain line every few seconds (logs stay readable). */
function progressReporter(io: CommandIO, label: string) {
  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true;
  const start = performance.now();
  let lastLine = 0;
  let drawn = false;
  let finished = false;
  return {
    update(p: Progress) {
      const secs = (performance.now() - start) / 1000;
      const rate = secs > 0 ? p.bytes / MiB / secs : 0;
      const pct = p.total > 0 ? Math.min(100, (p.bytes / p.total) * 100) : 100;
      const done = p.bytes >= p.total;
      if (tty) {
        const width = 30;
        const fill = Math.round((pct / 100) * width);
        io.stderr.write(
          `\r${label} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${pct.toFixed(0).padStart(3)}% ` +
            `${human(p.bytes)}/${human(p.total)} ${rate.toFixed(0)} MiB/s `,
        );
        drawn = true;
      } else if ((done && !finished) || (!done && secs - lastLine >= 5)) {
        lastLine = secs;
        finished = done;
        io.stderr.write(`${label}: ${pct.toFixed(0)}% ${human(p.bytes)}/${human(p.total)} ${rate.toFixed(0)} MiB/s\n`);
      }
    },
    end() {
      if (drawn) io.stderr.write("\n");
      drawn = false;
    },
  };
}

function summary(
  io: CommandIO,
  json: boolean,
  r: { operation: string; bytes: number; zeroBytes: number; seconds: number; virtualSize: number; checksum: string; connections: number },
) {
  const mibPerSecond = r.seconds > 0 ? r.bytes / MiB / r.seconds : 0;
  if (json) {
    io.stdout.write(
      `${JSON.stringify({
        operation: r.operation,
        bytes: r.bytes,
        zeroBytes: r.zeroBytes,
        virtualSize: r.virtualSize,
        seconds: Number(r.seconds.toFixed(3)),
        mibPerSecond: Number(mibPerSecond.toFixed(1)),
        connections: r.connections,
        checksum: { algorithm: "sha256", blockSize: BLOCK_SIZE, value: r.checksum },
      })}\n`,
    );
  } else {
    io.stdout.write(
      `${r.operation}: ${human(r.bytes)} of data in ${r.seconds.toFixed(1)} s (${mibPerSecond.toFixed(0)} MiB/s), ` +
        `sha256 checksum ${r.checksum}\n`,
    );
  }
}

async function readCa(file: string | undefined, cwd: string): Promise<string | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readInputFile("--ca", file, cwd);
  } catch (err) {
    if (err instanceof InputFileMissingError) throw err;
    throw new UsageError(`cannot read --ca ${file}: ${(err as Error).message}`);
  }
}

async function runDownload(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals: pos } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ca: { type: "string" },
      incremental: { type: "boolean", default: false },
      backing: { type: "string" },
      "previous-digests": { type: "string" },
      digests: { type: "string" },
      connections: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const [url, out] = positionals(pos, 2, "<transfer-url> <out.qcow2>");
  checkUrl(url!);
  if (values.incremental && !values.backing) throw new UsageError("--incremental needs --backing FILE");
  if (!values.incremental && values["previous-digests"]) throw new UsageError("--previous-digests applies only with --incremental");
  const connections = parseConnections(values.connections);
  if (values.backing) await requireInputFile("--backing", values.backing, io.cwd);
  if (values["previous-digests"]) await requireInputFile("--previous-digests", values["previous-digests"], io.cwd);
  const caPem = await readCa(values.ca, io.cwd);
  const previousDigests = values["previous-digests"]
    ? await readDigestsFile(resolve(io.cwd, values["previous-digests"]))
    : values.incremental
      ? await digestsBeside(resolve(io.cwd, values.backing!), io)
      : undefined;
  const bar = progressReporter(io, "download");
  const stop = stopOnSignals(io);
  try {
    const r = await download({
      transferUrl: url!,
      caPem,
      output: resolve(io.cwd, out!),
      backing: values.backing ? { path: resolve(io.cwd, values.backing) } : undefined,
      incremental: values.incremental,
      connections,
      previousDigests,
      onProgress: (p) => bar.update(p),
      signal: stop.signal,
    }).catch((err: unknown) => {
      throw stop.check(err);
    });
    bar.end();
    if (values.digests) {
      await writeDigestsFile(resolve(io.cwd, values.digests), { blockSize: r.blockSize, virtualSize: r.virtualSize, digests: r.digests });
    }
    summary(io, values.json, { operation: "download", ...r });
    return ExitCode.ok;
  } finally {
    bar.end();
    stop.dispose();
  }
}

/**
 * The previous layer's block digests when they sit beside it, so an incremental reads back only
 * partially dirty blocks instead of the whole backing chain: `<layer>.digests`, `<layer
 * without .qcow2>.digests` (what `--digests` is usually given), or the store's
 * `<vm>/blockhashes/<checkpoint>.<disk-id>` for a layer `<vm>/<disk-id>/<time>.<checkpoint>.<kind>.qcow2`.
 * A file that is not a valid digest file, or is for another disk size, is skipped with a note.
 */
async function digestsBeside(backing: string, io: CommandIO) {
  const candidates = [`${backing}.digests`, `${backing.replace(/\.qcow2$/, "")}.digests`];
  const layer = /^(?<disk>[^/]+)\/[^/.]+\.(?<checkpoint>[^/]+)\.(?:full|incremental)\.qcow2$/.exec(relative(dirname(dirname(backing)), backing));
  if (layer?.groups) candidates.push(join(dirname(dirname(backing)), "blockhashes", `${layer.groups.checkpoint}.${layer.groups.disk}`));
  for (const file of new Set(candidates)) {
    try {
      const d = await readDigestsFile(file);
      io.stderr.write(`download: previous digests from ${file}\n`);
      return d;
    } catch (err) {
      if ((err as { code?: unknown }).code === "ENOENT") continue;
      io.stderr.write(`download: ignoring ${file}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  return undefined;
}

async function runUpload(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals: pos } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ca: { type: "string" },
      format: { type: "string" },
      "disk-is-zero": { type: "boolean", default: false },
      connections: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const [image, url] = positionals(pos, 2, "<image> <transfer-url>");
  checkUrl(url!);
  const format = parseFormat(values.format);
  const connections = parseConnections(values.connections);
  await requireInputFile("image", image!, io.cwd);
  const caPem = await readCa(values.ca, io.cwd);
  const bar = progressReporter(io, "upload");
  const stop = stopOnSignals(io);
  try {
    const r = await upload({
      image: resolve(io.cwd, image!),
      format,
      transferUrl: url!,
      caPem,
      connections,
      diskIsZero: values["disk-is-zero"],
      onProgress: (p) => bar.update(p),
      signal: stop.signal,
    }).catch((err: unknown) => {
      throw stop.check(err);
    });
    bar.end();
    summary(io, values.json, { operation: "upload", ...r });
    return ExitCode.ok;
  } finally {
    bar.end();
    stop.dispose();
  }
}

async function runChecksum(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals: pos } = parseArgs({ args, allowPositionals: true, options: { format: { type: "string" } } });
  const [image] = positionals(pos, 1, "<image>");
  const format = parseFormat(values.format);
  await requireInputFile("image", image!, io.cwd);
  const stop = stopOnSignals(io);
  try {
    const d = await digestLocalImage({ image: resolve(io.cwd, image!), format, signal: stop.signal }).catch((err: unknown) => {
      throw stop.check(err);
    });
    io.stdout.write(`${formatChecksumJson(checksumResult(d))}\n`);
    return ExitCode.ok;
  } finally {
    stop.dispose();
  }
}

const transfer: Command = {
  name: "transfer",
  summary: "download, upload or checksum an image over the imageio protocol (like ovirt-img)",
  usage,
  async run(args, io) {
    const [sub, ...rest] = args;
    try {
      switch (sub) {
        case "download":
          return await runDownload(rest, io);
        case "upload":
          return await runUpload(rest, io);
        case "checksum":
          return await runChecksum(rest, io);
        default:
          throw new UsageError(sub ? `unknown subcommand '${sub}'` : "missing subcommand");
      }
    } catch (err) {
      if (err instanceof InterruptedError) {
        io.stderr.write("ferry transfer: interrupted\n");
        return SIGNAL_EXIT[err.signal];
      }
      const urlHint = rest.find((a) => /^https?:\/\//.test(a));
      if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
        io.stderr.write(`ferry transfer: ${redactText((err as Error).message)}\n\n${usage}`);
        return ExitCode.usage;
      }
      const where = urlHint ? ` (${redactUrl(urlHint)})` : "";
      io.stderr.write(`ferry transfer ${sub}: ${redactText(describe(err))}${where}\n`);
      if (err instanceof InputFileMissingError) return ExitCode.unavailable;
      if (err instanceof TransferCancelledError) return ExitCode.failed;
      if (err instanceof OutputExistsError) return ExitCode.invalid;
      if (isUnreachable(err)) return ExitCode.unavailable;
      return ExitCode.failed;
    }
  },
};

function describe(err: unknown): string {
  if (err instanceof PermanentError || err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === "string" ? `${err.message} [${code}]` : err.message;
  }
  return String(err);
}

function isUnreachable(err: unknown): boolean {
  for (let e: unknown = err; e && typeof e === "object"; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EHOSTUNREACH" || code === "UND_ERR_CONNECT_TIMEOUT") return true;
  }
  return false;
}

export default transfer;
