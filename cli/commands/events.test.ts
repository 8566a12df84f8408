import { describe, expect, it } from "vitest";
import { formatEvent } from "./events.ts";

describe("ferry events", () => {
  it("formatEvent - one line with the event's time, subject, fields and where it is stored", () => {
    const line = formatEvent({
      subject: "backup.requested.rejected",
      stream: "FERRY_EVENTS",
      seq: 7,
      received: new Date("2025-01-31T02:00:02Z"),
      receivedNanos: 1738288802000000000n,
      data: { id: "x", time: "2025-01-31T02:00:01Z", correlationId: "c", subject: "backup.requested", reason: "vm: required", errors: [{ path: "vm", message: "required" }], payload: "{}" },
      text: "",
    });
    expect(line).toBe('2025-01-31T02:00:01Z  backup.requested.rejected  subject=backup.requested reason="vm: required" payload={}  [FERRY_EVENTS#7]');
  });

  it("formatEvent - progress as a percentage, nested vm by name, non-JSON payloads shown as text", () => {
    const progress = formatEvent({ subject: "transfer.progress", stream: "", seq: 0, received: new Date(0), receivedNanos: 0n, data: { time: "t", vm: { id: "1", name: "web01" }, bytes: 50, total: 200 }, text: "" });
    expect(progress).toBe("t  transfer.progress  25% vm=web01 bytes=50 total=200  [live]");
    const raw = formatEvent({ subject: "backup.requested", stream: "FERRY_COMMANDS", seq: 1, received: new Date(0), receivedNanos: 0n, data: undefined, text: "not json" });
    expect(raw).toContain('(not a JSON object) "not json"');
  });
});
