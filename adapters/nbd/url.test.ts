import { describe, expect, it } from "vitest";
import { formatNbdUnixUrl, parseNbdUrl } from "./url.ts";

describe("parseNbdUrl", () => {
  it("parseNbdUrl - reads the legacy unix and tcp forms imageio tickets use", () => {
    expect(parseNbdUrl("nbd:unix:/run/vdsm/nbd/abc.sock:exportname=sda")).toEqual({ socket: "/run/vdsm/nbd/abc.sock", exportName: "sda" });
    expect(parseNbdUrl("nbd:unix:/tmp/x.sock")).toEqual({ socket: "/tmp/x.sock", exportName: "" });
    expect(parseNbdUrl("nbd:localhost:10809:exportname=a:b")).toEqual({ host: "localhost", port: 10809, exportName: "a:b" });
  });

  it("parseNbdUrl - reads NBD URIs", () => {
    expect(parseNbdUrl("nbd://127.0.0.1:1234/disk")).toEqual({ host: "127.0.0.1", port: 1234, exportName: "disk" });
    expect(parseNbdUrl("nbd+unix:///disk?socket=/tmp/s.sock")).toEqual({ socket: "/tmp/s.sock", exportName: "disk" });
  });

  it("parseNbdUrl - rejects other schemes with a typed error", () => {
    expect(() => parseNbdUrl("file:///tmp/x")).toThrow(/unsupported NBD URL/);
    expect(() => parseNbdUrl("nbd+unix:///disk")).toThrow(/socket/);
  });

  it("formatNbdUnixUrl - round-trips through parseNbdUrl", () => {
    const url = formatNbdUnixUrl("/tmp/a b.sock", "x");
    expect(url).toBe("nbd:unix:/tmp/a b.sock:exportname=x");
    expect(parseNbdUrl(url)).toEqual({ socket: "/tmp/a b.sock", exportName: "x" });
  });
});
