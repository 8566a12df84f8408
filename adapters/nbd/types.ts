/** One extent of a BLOCK_STATUS reply, with an absolute offset. */
export interface BlockExtent {
  offset: number;
  length: number;
  flags: number;
}

/** What the server told us about the export during NBD_OPT_GO. */
export interface ExportInfo {
  size: number;
  transmissionFlags: number;
  minBlockSize: number;
  preferredBlockSize: number;
  maxBlockSize: number;
  structuredReplies: boolean;
  /** Negotiated meta contexts, name → id. */
  contexts: Map<string, number>;
}
