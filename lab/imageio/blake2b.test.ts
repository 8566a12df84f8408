import crypto from "node:crypto";
import { describe, expect, it } from "vitest";
import { Blake2b } from "./blake2b.ts";

describe("Blake2b", () => {
  it("Blake2b - digest 64 equals OpenSSL's blake2b512 for any length and any update split", () => {
    for (const n of [0, 1, 127, 128, 129, 255, 256, 257, 1000, 70_001]) {
      const data = crypto.randomBytes(n);
      const expected = crypto.createHash("blake2b512").update(data).digest("hex");
      expect(new Blake2b(64).update(data).digest().toString("hex")).toBe(expected);
      const h = new Blake2b(64);
      for (let i = 0; i < n; ) {
        const k = Math.min(n - i, 1 + ((i * 7919) % 301));
        h.update(data.subarray(i, i + k));
        i += k;
      }
      expect(h.digest().toString("hex")).toBe(expected);
    }
  });

  it("Blake2b - digest 32 matches Python's hashlib.blake2b(digest_size=32), not a truncated blake2b-512", () => {
    // Vectors from CPython's hashlib.
    expect(new Blake2b(32).digest().toString("hex")).toBe("0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
    expect(new Blake2b(32).update(Buffer.from("abc")).digest().toString("hex")).toBe(
      "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319",
    );
    const d = Buffer.from(Array.from({ length: 1_000_000 }, (_, i) => i % 251));
    expect(new Blake2b(32).update(d).digest().toString("hex")).toBe("9e5e2f2d303e7db6db30a3355a9a7def57785f58e04a95b22254b60ab9e9a51b");
    expect(new Blake2b(20).update(d).digest().toString("hex")).toBe("99714d214f1ee54139fe4e36d679b16c55a709e4");
    const truncated = crypto.createHash("blake2b512").update(d).digest().subarray(0, 32).toString("hex");
    expect(truncated).not.toBe("9e5e2f2d303e7db6db30a3355a9a7def57785f58e04a95b22254b60ab9e9a51b");
  });

  it("Blake2b - refuses invalid digest sizes and reuse after digest", () => {
    expect(() => new Blake2b(0)).toThrow(RangeError);
    expect(() => new Blake2b(65)).toThrow(RangeError);
    const h = new Blake2b(32);
    h.digest();
    expect(() => h.update(Buffer.from("x"))).toThrow();
  });
});
