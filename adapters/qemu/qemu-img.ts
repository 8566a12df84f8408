import { existsSync } from "node:fs";
import {
  QemuCheckIncompleteError,
  QemuCheckUnsupportedError,
  QemuImageCorruptError,
  QemuImageLeaksError,
  QemuToolError,
} from "./errors.ts";
import { cleanStderr, parseJson, runTool, UNTRUSTED_LIMITS, type ToolLimits } from "./run.ts";
import {
  checkSchema,
  infoChainSchema,
  infoSchema,
  mapSchema,
  measureSchema,
  toImageInfo,
  type CheckResult,
  type ImageInfo,
  type MapExtent,
  type MeasureResult,
} from "./types.ts";

/**
 * qemu-img as argv arrays. Every call names the format explicitly (`-f`, `-F`, `-O`): probing a
 * format from file content lets a raw guest image pose as qcow2 with a backing file on the host.
 */
export type ImageFormat = "qcow2" | "raw";

export interface ImageRef {
  path: string;
  format: ImageFormat;
}

/** Options every call accepts. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** For calls that open an image: read it while another process may have it open (`-U`). */
export interface OpenOptions extends CallOptions {
  /** `-U`: open without taking image locks, for images in use by qemu-nbd or a writer. Read-only calls only. */
  forceShare?: boolean;
  /** The image comes from outside Ferry: apply time and memory limits (`limits` overrides the defaults). */
  untrusted?: boolean;
  limits?: ToolLimits;
}

export type CreateOptionValue = string | number | boolean;

export interface CreateParams extends CallOptions {
  path: string;
  format: ImageFormat;
  /** Virtual size in bytes; optional with a backing file (it inherits the backing size). */
  size?: number;
  backing?: ImageRef;
  /** `-o` options, e.g. {compat: "0.10"} for qcow2 v2, {cluster_size: 65536}, {preallocation: "metadata"}. */
  options?: Record<string, CreateOptionValue>;
}

export type BitmapOp = "add" | "remove" | "clear" | "enable" | "disable" | "merge";

export interface BitmapParams extends CallOptions {
  op: BitmapOp;
  name: string;
  /** Image format of `path`; qcow2 is the only format with persistent bitmaps. */
  format?: "qcow2";
  /** For merge: the source bitmap name. */
  source?: string;
  /** For merge: the image holding the source bitmap (`-b`, `-F`); default: the same image. */
  sourceImage?: ImageRef;
  /** For add: granularity in bytes (`-g`). */
  granularity?: number;
  /** For add: create the bitmap disabled. */
  disabled?: boolean;
}

export interface CompareResult {
  identical: boolean;
  /** qemu-img's own words, e.g. "Images are identical." or "Content mismatch at offset 1048576!". */
  detail: string;
  /** The first differing offset, when qemu-img reports one. */
  offset?: number;
}

export interface QemuImgConfig {
  /** qemu-img binary; default "qemu-img" from PATH. */
  binary?: string;
  /** prlimit binary for untrusted images, or false to rely on the timeout alone. Default: /usr/bin/prlimit if present. */
  prlimit?: string | false;
  /** Limits for untrusted images (default UNTRUSTED_LIMITS: 30 s, 1 GiB address space, 30 CPU s). */
  untrustedLimits?: ToolLimits;
}

export interface QemuImg {
  create(p: CreateParams): Promise<void>;
  info(path: string, o: OpenOptions & { format?: ImageFormat; backingChain: true }): Promise<ImageInfo[]>;
  info(path: string, o?: OpenOptions & { format?: ImageFormat; backingChain?: false }): Promise<ImageInfo>;
  check(path: string, o: OpenOptions & { format: ImageFormat; repair?: "leaks" | "all" }): Promise<CheckResult>;
  measure(
    o: CallOptions & { outputFormat: ImageFormat; size?: number; image?: ImageRef; options?: Record<string, CreateOptionValue>; forceShare?: boolean },
  ): Promise<MeasureResult>;
  compare(a: string, b: string, o: OpenOptions & { formatA: ImageFormat; formatB: ImageFormat; strict?: boolean }): Promise<CompareResult>;
  bitmap(path: string, p: BitmapParams): Promise<void>;
  rebase(path: string, o: CallOptions & { format: ImageFormat; backing: ImageRef | null; unsafe?: boolean }): Promise<void>;
  commit(path: string, o: CallOptions & { format: ImageFormat; base?: string; drop?: boolean }): Promise<void>;
  convert(
    src: ImageRef,
    dst: ImageRef,
    o?: CallOptions & {
      options?: Record<string, CreateOptionValue>;
      /** Write onto this backing file instead of a standalone image (`-B`, `-F`); only new data is written. */
      targetBacking?: ImageRef;
      /** `-S 0` makes a fully allocated copy; default: sparse. */
      sparse?: boolean;
      compress?: boolean;
      forceShare?: boolean;
      /** Keep bitmaps (`--bitmaps`, qcow2 → qcow2 only). */
      bitmaps?: boolean;
      /** `-p`: called with qemu-img's progress, 0-100 (percent of the image walked), as it reports it. */
      onProgress?: (percent: number) => void;
    },
  ): Promise<void>;
  map(path: string, o: OpenOptions & { format: ImageFormat }): Promise<MapExtent[]>;
  /** `qemu-img amend -o` (e.g. compat=1.1 upgrades qcow2 v2 to v3). */
  amend(path: string, o: CallOptions & { format: "qcow2"; options: Record<string, CreateOptionValue> }): Promise<void>;
}

const DEFAULT_PRLIMIT = "/usr/bin/prlimit";

/** `qemu-img -p` writes "    (12.34/100%)\r" to stdout, also when it is a pipe; pieces may split a report. */
function progressParser(cb: (percent: number) => void): (text: string) => void {
  let pending = "";
  return (text) => {
    pending += text;
    const re = /\((\d+(?:\.\d+)?)\/100%\)/g;
    let last = 0;
    for (let m = re.exec(pending); m; m = re.exec(pending)) {
      cb(Math.min(100, Number(m[1])));
      last = re.lastIndex;
    }
    pending = pending.slice(last).slice(-64);
  };
}

function optionString(options: Record<string, CreateOptionValue>): string {
  return Object.entries(options)
    .map(([k, v]) => {
      const value = typeof v === "boolean" ? (v ? "on" : "off") : String(v);
      if (/[,=]/.test(k)) throw new QemuToolError("qemu-img", "options", undefined, `invalid option name '${k}'`);
      // qemu's option parser escapes a comma by doubling it.
      return `${k}=${value.replaceAll(",", ",,")}`;
    })
    .join(",");
}

function sizeArg(size: number): string {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new QemuToolError("qemu-img", "create", undefined, `invalid size ${size}`);
  }
  return String(size);
}

export function createQemuImg(config: QemuImgConfig = {}): QemuImg {
  const binary = config.binary ?? "qemu-img";
  const prlimit = config.prlimit ?? (existsSync(DEFAULT_PRLIMIT) ? DEFAULT_PRLIMIT : false);
  const untrustedLimits = config.untrustedLimits ?? UNTRUSTED_LIMITS;

  const limitsFor = (o: OpenOptions | undefined): ToolLimits | undefined =>
    o?.limits ?? (o?.untrusted ? untrustedLimits : undefined);

  const run = (op: string, args: string[], o?: OpenOptions, okExitCodes?: number[], onStdout?: (text: string) => void) =>
    runTool(binary, args, {
      op,
      prlimit,
      ...(o?.signal ? { signal: o.signal } : {}),
      ...(limitsFor(o) ? { limits: limitsFor(o) as ToolLimits } : {}),
      ...(okExitCodes ? { okExitCodes } : {}),
      ...(onStdout ? { onStdout } : {}),
    });

  const shareFlag = (o?: { forceShare?: boolean }) => (o?.forceShare ? ["-U"] : []);

  async function info(path: string, o: OpenOptions & { format?: ImageFormat; backingChain?: boolean } = {}) {
    if (o.untrusted && !o.format) {
      throw new QemuToolError("qemu-img", "info", undefined, "an untrusted image must be opened with an explicit format");
    }
    const args = ["info", "--output=json", ...shareFlag(o), ...(o.format ? ["-f", o.format] : [])];
    if (o.backingChain) args.push("--backing-chain");
    args.push(path);
    const { stdout } = await run("info", args, o);
    if (o.backingChain) return parseJson("qemu-img", "info", stdout, infoChainSchema).map(toImageInfo);
    return toImageInfo(parseJson("qemu-img", "info", stdout, infoSchema));
  }

  return {
    async create(p) {
      const args = ["create", "-q", "-f", p.format];
      if (p.options && Object.keys(p.options).length) args.push("-o", optionString(p.options));
      if (p.backing) args.push("-b", p.backing.path, "-F", p.backing.format);
      args.push(p.path);
      if (p.size !== undefined) args.push(sizeArg(p.size));
      else if (!p.backing) throw new QemuToolError("qemu-img", "create", undefined, "size is required without a backing file");
      await run("create", args, p);
    },

    info: info as QemuImg["info"],

    async check(path, o) {
      const args = ["check", "--output=json", ...shareFlag(o), "-f", o.format];
      if (o.repair) args.push("-r", o.repair);
      args.push(path);
      const { exitCode, stdout, stderr } = await run("check", args, o, [1, 2, 3, 63]);
      if (exitCode === 63) throw new QemuCheckUnsupportedError(path, o.format);
      if (exitCode === 1 && !stdout.trim()) throw new QemuCheckIncompleteError(path, cleanStderr(stderr));
      const raw = parseJson("qemu-img", "check", stdout, checkSchema);
      const result: CheckResult = {
        filename: raw.filename,
        format: raw.format,
        checkErrors: raw["check-errors"],
        corruptions: raw.corruptions ?? 0,
        leaks: raw.leaks ?? 0,
        raw,
      };
      if (raw["image-end-offset"] !== undefined) result.imageEndOffset = raw["image-end-offset"];
      if (raw["total-clusters"] !== undefined) result.totalClusters = raw["total-clusters"];
      if (raw["allocated-clusters"] !== undefined) result.allocatedClusters = raw["allocated-clusters"];
      switch (exitCode) {
        case 0:
          return result;
        case 1:
          throw new QemuCheckIncompleteError(path, cleanStderr(stderr) || `${result.checkErrors} check errors`, result);
        case 2:
          throw new QemuImageCorruptError(path, result);
        default:
          throw new QemuImageLeaksError(path, result);
      }
    },

    async measure(o) {
      const args = ["measure", "--output=json", ...shareFlag(o), "-O", o.outputFormat];
      if (o.options && Object.keys(o.options).length) args.push("-o", optionString(o.options));
      if (o.image) args.push("-f", o.image.format, o.image.path);
      else if (o.size !== undefined) args.push("--size", sizeArg(o.size));
      else throw new QemuToolError("qemu-img", "measure", undefined, "either size or image is required");
      const { stdout } = await run("measure", args, o);
      const raw = parseJson("qemu-img", "measure", stdout, measureSchema);
      const out: MeasureResult = { required: raw.required, fullyAllocated: raw["fully-allocated"] };
      if (raw.bitmaps !== undefined) out.bitmaps = raw.bitmaps;
      return out;
    },

    async compare(a, b, o) {
      const args = ["compare", ...shareFlag(o), "-f", o.formatA, "-F", o.formatB];
      if (o.strict) args.push("-s");
      args.push(a, b);
      const { exitCode, stdout, stderr } = await run("compare", args, o, [1]);
      const detail = cleanStderr(`${stdout}`) || cleanStderr(stderr);
      const result: CompareResult = { identical: exitCode === 0, detail };
      const m = /offset (\d+)/.exec(stdout);
      if (exitCode === 1 && m?.[1]) result.offset = Number(m[1]);
      return result;
    },

    async bitmap(path, p) {
      const args = ["bitmap", "-f", p.format ?? "qcow2"];
      switch (p.op) {
        case "merge": {
          if (!p.source) throw new QemuToolError("qemu-img", "bitmap", undefined, "merge needs a source bitmap");
          args.push("--merge", p.source);
          if (p.sourceImage) args.push("-b", p.sourceImage.path, "-F", p.sourceImage.format);
          break;
        }
        case "add":
          args.push("--add");
          if (p.granularity) args.push("-g", String(p.granularity));
          if (p.disabled) args.push("--disable");
          break;
        default:
          args.push(`--${p.op}`);
      }
      args.push(path, p.name);
      await run(`bitmap --${p.op}`, args, p);
    },

    async rebase(path, o) {
      const args = ["rebase", "-f", o.format];
      if (o.unsafe) args.push("-u");
      if (o.backing) args.push("-b", o.backing.path, "-F", o.backing.format);
      else args.push("-b", "");
      args.push(path);
      await run("rebase", args, o);
    },

    async commit(path, o) {
      const args = ["commit", "-q", "-f", o.format];
      if (o.base) args.push("-b", o.base);
      if (o.drop) args.push("-d");
      args.push(path);
      await run("commit", args, o);
    },

    async convert(src, dst, o = {}) {
      const args = ["convert", ...shareFlag(o), "-f", src.format, "-O", dst.format];
      if (o.options && Object.keys(o.options).length) args.push("-o", optionString(o.options));
      if (o.targetBacking) args.push("-B", o.targetBacking.path, "-F", o.targetBacking.format);
      if (o.sparse === false) args.push("-S", "0");
      if (o.compress) args.push("-c");
      if (o.bitmaps) args.push("--bitmaps");
      if (o.onProgress) args.push("-p");
      args.push(src.path, dst.path);
      await run("convert", args, o, undefined, o.onProgress ? progressParser(o.onProgress) : undefined);
    },

    async map(path, o) {
      const args = ["map", "--output=json", ...shareFlag(o), "-f", o.format, path];
      const { stdout } = await run("map", args, o);
      return parseJson("qemu-img", "map", stdout, mapSchema).map((e) => {
        const x: MapExtent = { start: e.start, length: e.length, depth: e.depth, zero: e.zero, data: e.data };
        if (e.present !== undefined) x.present = e.present;
        if (e.offset !== undefined) x.offset = e.offset;
        return x;
      });
    },

    async amend(path, o) {
      await run("amend", ["amend", "-f", o.format, "-o", optionString(o.options), path], o);
    },
  };
}

/** The default instance: qemu-img from PATH, prlimit when present. */
export const qemuImg: QemuImg = createQemuImg();
