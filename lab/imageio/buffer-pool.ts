/**
 * Reusable transfer buffers. GET and PUT move data in fixed-size pieces; recycling them
 * keeps the daemon's memory flat instead of leaving hundreds of MiB of garbage for the GC
 * during a large transfer (the lab often runs in the same process as the code under test).
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  give(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep) this.free.push(b);
  }
}
