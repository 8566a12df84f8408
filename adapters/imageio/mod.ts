/**
 * Ferry's imageio HTTP data client (ovirt-api.md §7): open a transfer URL, read extents, ranged
 * reads and writes, zero, flush, checksum; typed errors that never contain the ticket; and the
 * per-range retry policy.
 */
export {
  openImageio,
  ImageioClient,
  type OpenImageioOptions,
  type ImageioOptions,
  type ChecksumResult,
  type CallOptions,
} from "./client.ts";
export { parseExtents, extentsSize, type Extent, type ExtentContext } from "./extents.ts";
export { RangeReader, RangeReaders } from "./range-reader.ts";
export { withRetry, isRetryable, type RetryPolicy } from "./retry.ts";
export {
  DirtyExtentsUnsupportedError,
  ImageioBadRequestError,
  ImageioConnectionError,
  ImageioForbiddenError,
  ImageioHttpError,
  ImageioProtocolError,
  ImageioRangeError,
  ImageioServerError,
  ImageioTlsError,
  ImageioUnsupportedError,
  Redactor,
  type RequestInfo,
} from "./errors.ts";
