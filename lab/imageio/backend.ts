import { META_CONTEXT, NBD_STATE_DIRTY, NbdClient, parseNbdUrl, type NbdAddress } from "../../adapters/nbd/mod.ts";
import { pyRepr } from "./py-json.ts";

/**
 * imageio's NBD backend: every HTTP connection that uses a ticket gets its own NBD
 * connection (leased from the ticket's pool of at most max_connections), with
 * base:allocation, qemu:allocation-depth (holes) and, for dirty tickets, the single
 * qemu:dirty-bitmap the export offers. Extents are merged exactly like
 * ovirt_imageio/_internal/nbdutil.py, so the JSON matches a real daemon's.
 */

/** Private flag bits used to merge contexts (same values as imageio's nbd.py). */
const STATE_HOLE = 1;
const STATE_ZERO = 2;
const EXTENT_DIRTY = 4;
const EXTENT_BACKING = 8;
/** imageio asks for at most 2 GiB of block status per request. */
const EXTENTS_STEP = 2 * 1024 * 1024 * 1024;

export interface ZeroExtent {
  start: number;
  length: number;
  zero: boolean;
  hole: boolean;
}

export interface DirtyExtent {
  start: number;
  length: number;
  dirty: boolean;
  zero: boolean;
}

export class UnsupportedOperation extends Error {
  constructor(reason: string) {
    super(`Operation not supported: ${reason}`);
  }
}

export class NbdPool {
  private readonly address: NbdAddress;
  private readonly idle: NbdClient[] = [];
  /** Every open client, leased or idle, so close() can wait for all of them. */
  private readonly all = new Set<NbdClient>();
  private readonly waiters: Array<{ resolve: (c: NbdClient) => void; reject: (e: Error) => void }> = [];
  private total = 0;
  private closed = false;

  private readonly dirty: boolean;
  readonly maxConnections: number;
  constructor(
    url: string,
    dirty: boolean,
    maxConnections: number,
  ) {
    this.dirty = dirty;
    this.maxConnections = maxConnections;
    this.address = parseNbdUrl(url);
  }

  /** Lease a connection; waits when all max_connections are leased (like qemu-nbd --shared). */
  async acquire(): Promise<NbdClient> {
    if (this.closed) throw new Error("backend closed");
    while (this.idle.length) {
      const c = this.idle.pop()!;
      if (c.isOpen) return c;
      this.total--;
      this.all.delete(c);
      void c.close();
    }
    if (this.total >= this.maxConnections) {
      return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    }
    this.total++;
    try {
      const metaContexts: string[] = [META_CONTEXT.BASE_ALLOCATION, META_CONTEXT.QEMU_ALLOCATION_DEPTH];
      if (this.dirty) metaContexts.push(META_CONTEXT.QEMU_DIRTY_BITMAP);
      const c = await NbdClient.connect({ ...this.address, metaContexts, timeoutMs: 30_000 });
      if (this.closed) {
        await c.close();
        throw new Error("backend closed");
      }
      this.all.add(c);
      return c;
    } catch (err) {
      this.total--;
      this.handOver();
      throw err;
    }
  }

  release(c: NbdClient): void {
    if (this.closed || !c.isOpen) {
      this.total--;
      this.all.delete(c);
      void c.close();
      this.handOver();
      return;
    }
    const w = this.waiters.shift();
    if (w) w.resolve(c);
    else this.idle.push(c);
  }

  /** Close every connection, leased ones included (they finish their requests in flight first). */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error("backend closed"));
    this.idle.splice(0);
    await Promise.all([...this.all].map((c) => c.close()));
  }

  /** A slot freed up: let the next waiter open a fresh connection. */
  private handOver(): void {
    const w = this.waiters.shift();
    if (!w) return;
    this.acquire().then(w.resolve, w.reject);
  }
}

/** The export's single dirty bitmap context, as imageio requires exactly one. */
export function dirtyContext(client: NbdClient): string | undefined {
  const names = [...client.contexts.keys()].filter((n) => n.startsWith(META_CONTEXT.QEMU_DIRTY_BITMAP));
  return names.length === 1 ? names[0] : undefined;
}

interface FlagExtent {
  length: number;
  flags: number;
}

/** nbdutil.merged: split both lists at each other's boundaries, OR the flags. */
function merged(a: FlagExtent[], b: FlagExtent[]): FlagExtent[] {
  const out: FlagExtent[] = [];
  let i = 0;
  let j = 0;
  let ra = a[0] ? { ...a[0] } : undefined;
  let rb = b[0] ? { ...b[0] } : undefined;
  while (ra && rb) {
    const n = Math.min(ra.length, rb.length);
    out.push({ length: n, flags: ra.flags | rb.flags });
    ra.length -= n;
    rb.length -= n;
    if (!ra.length) ra = a[++i] ? { ...a[i]! } : undefined;
    if (!rb.length) rb = b[++j] ? { ...b[j]! } : undefined;
  }
  return out;
}

async function flagExtents(client: NbdClient, dirtyName: string | undefined): Promise<Array<FlagExtent & { start: number }>> {
  const size = client.size;
  const hasDepth = client.contexts.has(META_CONTEXT.QEMU_ALLOCATION_DEPTH);
  const out: Array<FlagExtent & { start: number }> = [];
  let start = 0;
  for (let offset = 0; offset < size; offset += EXTENTS_STEP) {
    const res = await client.blockStatus(offset, Math.min(EXTENTS_STEP, size - offset));
    const alloc = res.get(META_CONTEXT.BASE_ALLOCATION)!.map((e) => ({ length: e.length, flags: e.flags & (STATE_HOLE | STATE_ZERO) }));
    let list: FlagExtent[];
    if (dirtyName) {
      const dirty = res.get(dirtyName)!.map((e) => ({ length: e.length, flags: e.flags & NBD_STATE_DIRTY ? EXTENT_DIRTY : 0 }));
      list = merged(alloc, dirty);
    } else if (hasDepth) {
      // Depth 0: allocated in no layer of the chain, i.e. a hole.
      const depth = res.get(META_CONTEXT.QEMU_ALLOCATION_DEPTH)!.map((e) => ({ length: e.length, flags: e.flags === 0 ? EXTENT_BACKING : 0 }));
      list = merged(alloc, depth);
    } else {
      list = alloc;
    }
    for (const e of list) {
      const last = out[out.length - 1];
      if (last && last.flags === e.flags) last.length += e.length;
      else out.push({ start, length: e.length, flags: e.flags });
      start += e.length;
    }
  }
  return out;
}

/** GET …/extents?context=zero */
export async function zeroExtents(client: NbdClient): Promise<ZeroExtent[]> {
  // Without base:allocation imageio reports one data extent, like other backends.
  if (!client.contexts.has(META_CONTEXT.BASE_ALLOCATION)) {
    return [{ start: 0, length: client.size, zero: false, hole: false }];
  }
  return (await flagExtents(client, undefined)).map((e) => ({
    start: e.start,
    length: e.length,
    zero: (e.flags & STATE_ZERO) !== 0,
    hole: (e.flags & EXTENT_BACKING) !== 0,
  }));
}

/** GET …/extents?context=dirty */
export async function dirtyExtents(client: NbdClient): Promise<DirtyExtent[]> {
  const name = dirtyContext(client);
  if (!name || !client.contexts.has(META_CONTEXT.BASE_ALLOCATION)) {
    throw new UnsupportedOperation(`NBD export ${pyRepr(client.exportName)} does not support dirty extents`);
  }
  return (await flagExtents(client, name)).map((e) => ({
    start: e.start,
    length: e.length,
    dirty: (e.flags & EXTENT_DIRTY) !== 0,
    zero: (e.flags & STATE_ZERO) !== 0,
  }));
}
