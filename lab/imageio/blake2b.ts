/**
 * BLAKE2b (RFC 7693) with a chosen digest size. imageio's default checksum is
 * `hashlib.blake2b(digest_size=32)`, which is NOT blake2b-512 truncated (the digest
 * size is part of the parameter block), and Node's crypto only offers blake2b512.
 * 64-bit words are held as (lo, hi) pairs of a Uint32Array.
 */

const IV = new Uint32Array([
  0xf3bcc908, 0x6a09e667, 0x84caa73b, 0xbb67ae85, 0xfe94f82b, 0x3c6ef372, 0x5f1d36f1, 0xa54ff53a, 0xade682d1, 0x510e527f,
  0x2b3e6c1f, 0x9b05688c, 0xfb41bd6b, 0x1f83d9ab, 0x137e2179, 0x5be0cd19,
]);

const SIGMA = [
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3, 11, 8, 12, 0, 5, 2, 15,
  13, 10, 14, 3, 6, 7, 1, 9, 4, 7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8, 9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3,
  13, 2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9, 12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11, 13, 11, 7, 14, 12,
  1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10, 6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5, 10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3,
  12, 13, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
];
/** Word-pair indexes into m. */
const SIGMA2 = new Uint8Array(SIGMA.map((x) => x * 2));

const v = new Uint32Array(32);
const m = new Uint32Array(32);

const TWO32 = 0x100000000;

/** The G mixing function on word pairs a, b, c, d with message words ix, iy (all in locals for speed). */
function g(a: number, b: number, c: number, d: number, ix: number, iy: number): void {
  let alo = v[a]!;
  let ahi = v[a + 1]!;
  let blo = v[b]!;
  let bhi = v[b + 1]!;
  let clo = v[c]!;
  let chi = v[c + 1]!;
  let dlo = v[d]!;
  let dhi = v[d + 1]!;
  let lo: number;
  let t0: number;
  let t1: number;

  lo = alo + blo + m[ix]!;
  ahi = (ahi + bhi + m[ix + 1]! + ((lo / TWO32) | 0)) >>> 0;
  alo = lo >>> 0;
  t0 = dlo ^ alo;
  t1 = dhi ^ ahi;
  dlo = t1 >>> 0;
  dhi = t0 >>> 0;
  lo = clo + dlo;
  chi = (chi + dhi + ((lo / TWO32) | 0)) >>> 0;
  clo = lo >>> 0;
  t0 = blo ^ clo;
  t1 = bhi ^ chi;
  blo = ((t0 >>> 24) | (t1 << 8)) >>> 0;
  bhi = ((t1 >>> 24) | (t0 << 8)) >>> 0;

  lo = alo + blo + m[iy]!;
  ahi = (ahi + bhi + m[iy + 1]! + ((lo / TWO32) | 0)) >>> 0;
  alo = lo >>> 0;
  t0 = dlo ^ alo;
  t1 = dhi ^ ahi;
  dlo = ((t0 >>> 16) | (t1 << 16)) >>> 0;
  dhi = ((t1 >>> 16) | (t0 << 16)) >>> 0;
  lo = clo + dlo;
  chi = (chi + dhi + ((lo / TWO32) | 0)) >>> 0;
  clo = lo >>> 0;
  t0 = blo ^ clo;
  t1 = bhi ^ chi;
  blo = ((t1 >>> 31) | (t0 << 1)) >>> 0;
  bhi = ((t0 >>> 31) | (t1 << 1)) >>> 0;

  v[a] = alo;
  v[a + 1] = ahi;
  v[b] = blo;
  v[b + 1] = bhi;
  v[c] = clo;
  v[c + 1] = chi;
  v[d] = dlo;
  v[d + 1] = dhi;
}

export class Blake2b {
  private readonly h = new Uint32Array(16);
  private readonly block = new Uint8Array(128);
  private c = 0;
  /** Bytes compressed so far (fits a JS number for any real image). */
  private t = 0;
  private finished = false;

  private readonly outlen: number;
  constructor(outlen: number = 64) {
    this.outlen = outlen;
    if (outlen < 1 || outlen > 64) throw new RangeError("blake2b digest size must be 1..64");
    this.h.set(IV);
    this.h[0]! ^= 0x01010000 ^ outlen;
  }

  update(data: Uint8Array): this {
    if (this.finished) throw new Error("digest already computed");
    let i = 0;
    const n = data.length;
    while (i < n) {
      if (this.c === 128) {
        this.t += 128;
        this.compress(this.block, 0, false);
        this.c = 0;
      }
      if (this.c === 0 && n - i > 128) {
        // Whole blocks straight from the input; the last one waits (it may be final).
        while (n - i > 128) {
          this.t += 128;
          this.compress(data, i, false);
          i += 128;
        }
        continue;
      }
      const take = Math.min(128 - this.c, n - i);
      this.block.set(data.subarray(i, i + take), this.c);
      this.c += take;
      i += take;
    }
    return this;
  }

  digest(): Buffer {
    if (this.finished) throw new Error("digest already computed");
    this.finished = true;
    this.t += this.c;
    this.block.fill(0, this.c);
    this.compress(this.block, 0, true);
    const out = Buffer.allocUnsafe(64);
    for (let i = 0; i < 16; i++) out.writeUInt32LE(this.h[i]!, i * 4);
    return out.subarray(0, this.outlen);
  }

  private compress(b: Uint8Array, o: number, last: boolean): void {
    const h = this.h;
    for (let i = 0; i < 16; i++) {
      v[i] = h[i]!;
      v[i + 16] = IV[i]!;
    }
    v[24] = v[24]! ^ this.t;
    v[25] = v[25]! ^ Math.floor(this.t / 0x100000000);
    if (last) {
      v[28] = ~v[28]!;
      v[29] = ~v[29]!;
    }
    for (let i = 0; i < 32; i++) {
      const p = o + i * 4;
      m[i] = b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
    }
    for (let r = 0; r < 12; r++) {
      const s = r * 16;
      g(0, 8, 16, 24, SIGMA2[s]!, SIGMA2[s + 1]!);
      g(2, 10, 18, 26, SIGMA2[s + 2]!, SIGMA2[s + 3]!);
      g(4, 12, 20, 28, SIGMA2[s + 4]!, SIGMA2[s + 5]!);
      g(6, 14, 22, 30, SIGMA2[s + 6]!, SIGMA2[s + 7]!);
      g(0, 10, 20, 30, SIGMA2[s + 8]!, SIGMA2[s + 9]!);
      g(2, 12, 22, 24, SIGMA2[s + 10]!, SIGMA2[s + 11]!);
      g(4, 14, 16, 26, SIGMA2[s + 12]!, SIGMA2[s + 13]!);
      g(6, 8, 18, 28, SIGMA2[s + 14]!, SIGMA2[s + 15]!);
    }
    for (let i = 0; i < 16; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 16]!;
  }
}
