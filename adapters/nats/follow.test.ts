import { describe, expect, it } from "vitest";
import { subjectsIntersect } from "./follow.ts";
import { natsSettings } from "./settings.ts";

describe("adapters/nats", () => {
  it("subjectsIntersect - wildcards on either side", () => {
    expect(subjectsIntersect("backup.requested", ">")).toBe(true);
    expect(subjectsIntersect("backup.requested", "*.failed")).toBe(false);
    expect(subjectsIntersect("backup.requested.rejected", "*.*.rejected")).toBe(true);
    expect(subjectsIntersect("backup.requested", "backup.*")).toBe(true);
    expect(subjectsIntersect("backup.requested", "backup.requested.rejected")).toBe(false);
    expect(subjectsIntersect("a.b", "a.>")).toBe(true);
    expect(subjectsIntersect("a", "a.>")).toBe(false);
  });

  it("natsSettings - --nats, then NATS_URL, then the config, then the default", () => {
    const config = { nats: { servers: ["nats://cfg:4222"], user: "u", password: "p" } };
    expect(natsSettings({ flag: "nats://flag:1", env: { NATS_URL: "nats://env:1" }, config, name: "t" })).toMatchObject({ servers: "nats://flag:1", via: "--nats", user: "u" });
    expect(natsSettings({ env: { NATS_URL: "nats://env:1" }, config, name: "t" })).toMatchObject({ servers: "nats://env:1", via: "NATS_URL" });
    expect(natsSettings({ env: {}, config, name: "t" })).toMatchObject({ servers: ["nats://cfg:4222"], via: "config" });
    expect(natsSettings({ env: {}, name: "t" })).toMatchObject({ servers: "nats://127.0.0.1:4222", via: "default" });
  });
});
