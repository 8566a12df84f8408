/**
 * Reusable transfer buffers. GET and PUT move data in fixed-size pieces; recycling them
 * keeps the daemon's memory flat instead of leaving hundreds of MiB of garbage for the GC
 * during a large transfer (the lab often runs in the same process as the code under test).
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  readonly size: number;
  private readonly keep: number;
  constructor(
    size: number,
    keep: number,
  ) {
    this.size = size;
    this.keep = keep;
  }

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  give(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep) this.free.push(b);
  }
}
