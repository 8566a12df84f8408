import type { Engine } from "../engine.ts";
import { created, HttpFault, incomplete, isUuid, NotFound, obj, ok, readBool, readEnum, readInt, str, type Ctx } from "../http.ts";
import { collection, encodeEvent } from "../json.ts";
import { EVENT_SEVERITIES, type LabEvent } from "../model.ts";
import type { Router } from "../router.ts";
import { matchesSearch, searchParams } from "../search.ts";
import { AuditType } from "../audit.ts";

/** `/events` (ovirt-api.md §9): external events with (origin, custom_id) unique; lists newest first. */
export function registerEvents(r: Router, e: Engine): void {
  r.post("/events", (ctx) => addExternalEvent(e, ctx));

  r.get("/events", (ctx) => {
    const { search, caseSensitive, max } = searchParams(ctx.query);
    const from = readInt(ctx.query.get("from"), "from");
    let list = [...e.st.events]
      .reverse()
      .filter((ev) => from === undefined || ev.index > from)
      .filter((ev) =>
        matchesSearch(
          search,
          {
            description: ev.description,
            severity: ev.severity,
            origin: ev.origin,
            type: String(ev.code),
            correlation_id: ev.correlationId,
            vm: ev.vmId,
            custom_data: ev.customData,
          },
          { caseSensitive },
        ),
      );
    if (max !== undefined) list = list.slice(0, max);
    return ok(collection("event", list.map(encodeEvent)));
  });

  r.get("/events/:id", (ctx) => {
    const id = ctx.params.id ?? "";
    const ev = /^\d+$/.test(id) ? e.st.events.find((x) => x.id === Number(id)) : undefined;
    if (!ev) throw new NotFound();
    return ok(encodeEvent(ev));
  });
}

function refId(v: unknown): string | undefined {
  const id = str(obj(v).id)?.toLowerCase();
  return id && isUuid(id) ? id : undefined;
}

function addExternalEvent(e: Engine, ctx: Ctx) {
  const b = obj(ctx.body);
  const missing = ["description", "severity", "origin", "custom_id"].filter((k) => b[k] === undefined || b[k] === "");
  if (missing.length) throw incomplete("Event", missing, "add");
  const severity = readEnum(b.severity, EVENT_SEVERITIES, "LogSeverity")!;
  const origin = str(b.origin)!;
  const customId = readInt(b.custom_id, "custom_id")!;
  if (origin.toLowerCase() === "ovirt") throw new HttpFault(400, "Operation Failed", "[Illegal Origin for External Event : oVirt]");
  if (e.st.events.some((ev) => ev.origin === origin && ev.customId === customId)) {
    throw new HttpFault(400, "Operation Failed", "[External Event with this custom id already exists.]");
  }
  const code = {
    normal: AuditType.EXTERNAL_EVENT_NORMAL,
    warning: AuditType.EXTERNAL_EVENT_WARNING,
    error: AuditType.EXTERNAL_EVENT_ERROR,
    alert: AuditType.EXTERNAL_ALERT,
  }[severity];
  const ev: Omit<LabEvent, "id" | "index" | "time"> = { code, severity, description: str(b.description)!, origin, customId };
  const flood = readInt(b.flood_rate, "flood_rate");
  if (flood !== undefined) ev.floodRate = flood;
  const logOnHost = readBool(b.log_on_host);
  if (logOnHost !== undefined) ev.logOnHost = logOnHost;
  const cd = str(b.custom_data);
  if (cd !== undefined) ev.customData = cd;
  if (ctx.correlationId) ev.correlationId = ctx.correlationId;
  // Linked objects are matched by id only (a name is ignored).
  const links: Array<[keyof LabEvent, string]> = [
    ["vmId", "vm"], ["hostId", "host"], ["storageDomainId", "storage_domain"], ["templateId", "template"],
    ["clusterId", "cluster"], ["dataCenterId", "data_center"], ["userId", "user"],
  ];
  for (const [field, key] of links) {
    const id = refId(b[key]);
    if (id) (ev as Record<string, unknown>)[field] = id;
  }
  return created(encodeEvent(e.addEvent(ev)), e.baseUrl);
}
