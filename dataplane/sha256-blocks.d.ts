/** Types of sha256-blocks.js (plain JavaScript so hashing threads need no TypeScript loader). */
export declare const ZERO_CHUNK: Buffer;
export declare class ShortBlockError extends Error {
  code: string;
}
export declare class BlockHasher {
  readonly length: number;
  constructor(length: number);
  update(data: Uint8Array): void;
  zeros(length: number): void;
  digest(): Buffer;
}
export interface CoreHashJob {
  readonly base: number;
  readonly blocks: readonly { readonly index: number; readonly length: number; readonly parts: readonly number[] }[];
}
export declare function runHashJob(job: CoreHashJob, memory: Uint8Array): Buffer;
