import { describe, expect, it } from "vitest";
import { z } from "zod";
import { bool, collection, date, int } from "./json.ts";
import { Backup, Disks, ImageTransfer } from "./models.ts";

describe("engine json", () => {
  it("engine json - integers come as strings or numbers", () => {
    expect(int.parse("10737418240")).toBe(10737418240);
    expect(int.parse(42)).toBe(42);
    expect(int.parse("-1")).toBe(-1);
    expect(int.safeParse("12abc").success).toBe(false);
    expect(int.safeParse(1.5).success).toBe(false);
  });

  it("engine json - booleans come as true/false in any case, strings, or 0/1", () => {
    expect(bool.parse("true")).toBe(true);
    expect(bool.parse("FALSE")).toBe(false);
    expect(bool.parse(true)).toBe(true);
    expect(bool.parse("1")).toBe(true);
    expect(bool.parse(0)).toBe(false);
    expect(bool.safeParse("yes").success).toBe(false);
  });

  it("engine json - dates are epoch milliseconds (ISO accepted)", () => {
    expect(date.parse(1714521600000).toISOString()).toBe("2024-05-01T00:00:00.000Z");
    expect(date.parse("1714521600000").getTime()).toBe(1714521600000);
    expect(date.parse("2024-05-01T00:00:00Z").getTime()).toBe(1714521600000);
    expect(date.safeParse("not a date").success).toBe(false);
  });

  it("engine json - collections accept {}, a wrapped array or a bare array", () => {
    const c = collection("disk", z.object({ id: z.string() }));
    expect(c.parse({})).toEqual([]);
    expect(c.parse({ disk: [] })).toEqual([]);
    expect(c.parse({ disk: [{ id: "a" }] })).toEqual([{ id: "a" }]);
    expect(c.parse([{ id: "b" }])).toEqual([{ id: "b" }]);
    expect(c.safeParse({ disks: [{ id: "a" }] }).success).toBe(false);
  });

  it("engine json - backup disks carry backup_mode and real numbers", () => {
    const disks = Disks.parse({
      disk: [
        { id: "d1", provisioned_size: "1073741824", backup_mode: "incremental", format: "cow", sparse: "true" },
        { id: "d2", provisioned_size: 1048576, backup_mode: "full", format: "raw", shareable: "false" },
      ],
    });
    expect(disks.map((d) => [d.backup_mode, d.provisioned_size])).toEqual([
      ["incremental", 1073741824],
      ["full", 1048576],
    ]);
    expect(disks[1]!.shareable).toBe(false);
  });

  it("engine json - a backup keeps its checkpoint ids and dates; a transfer its phase and URLs", () => {
    const b = Backup.parse({
      id: "b1",
      phase: "ready",
      to_checkpoint_id: "cp2",
      from_checkpoint_id: "cp1",
      creation_date: 1714521600000,
      vm: { id: "vm1", href: "/ovirt-engine/api/vms/vm1" },
    });
    expect(b.creation_date?.getTime()).toBe(1714521600000);
    expect(b.to_checkpoint_id).toBe("cp2");
    const t = ImageTransfer.parse({
      id: "t1",
      phase: "transferring",
      active: "false",
      transferred: "0",
      transfer_url: "https://h:54322/images/x",
      image: { id: "d1" },
    });
    expect(t.active).toBe(false);
    expect(t.transferred).toBe(0);
    expect(t.image?.id).toBe("d1");
  });
});
