/** qemu-img and qemu-nbd wrappers: argv arrays, explicit formats, JSON output, typed errors. */
export {
  createQemuImg,
  qemuImg,
  type BitmapOp,
  type BitmapParams,
  type CompareResult,
  type CreateParams,
  type ImageFormat,
  type ImageRef,
  type QemuImg,
  type QemuImgConfig,
} from "./qemu-img.ts";
export { startQemuNbd, type QemuNbdOptions, type QemuNbdServer } from "./qemu-nbd.ts";
export { UNTRUSTED_LIMITS, type ToolLimits } from "./run.ts";
export type { Bitmap, CheckResult, ImageInfo, MapExtent, MeasureResult } from "./types.ts";
export {
  QemuCheckIncompleteError,
  QemuCheckUnsupportedError,
  QemuImageCorruptError,
  QemuImageLeaksError,
  QemuNbdStartError,
  QemuTimeoutError,
  QemuToolError,
} from "./errors.ts";
