/** The transfer engine: download (backup), upload (restore) and the imageio-compatible block checksum. */
export { download, DownloadError, DEFAULT_CONNECTIONS, type DownloadParams, type DownloadResult } from "./download.ts";
export { upload, UploadError, type UploadParams, type UploadResult } from "./upload.ts";
export { digestLocalImage, detectFormat, LocalImageError } from "./local-image.ts";
export { TransferCancelledError } from "./abort.ts";
export { scratchDir, sweepScratch, type ScratchKind } from "./scratch.ts";
export { OutputExistsError, placeNoClobber, tempPathFor } from "./layer-file.ts";
export type { Progress, ProgressCallback } from "./progress.ts";
export {
  ALGORITHM,
  BLOCK_SIZE,
  DIGEST_SIZE,
  BlockHasher,
  DigestBuilder,
  DigestsError,
  blockCount,
  checksumHex,
  checksumResult,
  decodeDigests,
  deriveDigests,
  digestBuffer,
  encodeDigests,
  formatChecksumJson,
  readDigestsFile,
  writeDigestsFile,
  zeroDigest,
  zeroDigests,
  type BlockDigests,
  type ChecksumResult,
} from "./blkhash.ts";
