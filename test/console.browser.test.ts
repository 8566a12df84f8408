/**
 * The console in a real headless Chromium (Debian's chromium, driven by puppeteer-core) against
 * the lab: PRD + DR engines, the real pipeline (backup and restore functions) on a real
 * nats-server, the console started as `ferry console` starts it. An operator logs in, sees a
 * failed and an ok VM, starts a backup and watches its progress bars reach 100% over server-sent
 * events without a reload, finds the new restore point on the VM page, restores it to DR through
 * the form (plan first, then done), runs a restore test and sees the point boot-tested; a viewer
 * is refused an action. Every time is written in the configured zone (not UTC, not the machine's).
 * Screenshots of every page go to test-output/console/.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startConsole, type RunningConsole } from "../console/start.ts";
import { putUser } from "../console/users.ts";
import { runDomId } from "../console/pages/run-card.ts";
import { startPipeline, type Pipeline } from "./backup-support.ts";

// The functions passed to page.evaluate run in the browser; this project compiles without the
// DOM library, so the few browser names they use are declared here, for this file only.
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any;
declare const window: any;
type HTMLElement = any;
type HTMLInputElement = any;

const CHROMIUM = "/usr/bin/chromium";
const SHOTS = fileURLToPath(new URL("../test-output/console/", import.meta.url));
const MiB = 1048576;
const OPERATOR = { user: "olga", password: "operator-pass-1" };
const VIEWER = { user: "victor", password: "viewer-pass-22" };
// The config's timeZone: +05:30 all year, so a time shown in UTC or in the machine's zone cannot pass.
const ZONE = "Asia/Kolkata";

/** An ISO time as the pages must write it, worked out here with Intl on its own. */
function inZone(iso: string): string {
  const p = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }).formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute} ${ZONE}`;
}

let p: Pipeline;
let con: RunningConsole;
let browser: Browser;
let page: Page;
let auditFile: string;
const requested: { vm: string; id: string }[] = [];
const logLines: string[] = [];

async function shot(name: string, target: Page = page): Promise<void> {
  // Right after a navigation Chromium can report a 0-wide layout for a moment (CI saw
  // "Cannot take screenshot with 0 width"): wait until the page has laid out, then take it.
  await target.waitForFunction(() => document.readyState === "complete" && document.documentElement.getBoundingClientRect().width > 0, { polling: 50 });
  for (let attempt = 1; ; attempt++) {
    try {
      await target.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
      return;
    } catch (err) {
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function login(target: Page, who: { user: string; password: string }): Promise<void> {
  await target.goto(`${con.url}/`, { waitUntil: "domcontentloaded" });
  expect(new URL(target.url()).pathname).toBe("/login");
  await target.type("input[name=user]", who.user);
  await target.type("input[name=password]", who.password);
  await Promise.all([target.waitForNavigation({ waitUntil: "domcontentloaded" }), target.click("form.login button[type=submit]")]);
  expect(new URL(target.url()).pathname, await text(target, "main")).toBe("/");
}

/** Messages in FERRY_COMMANDS: every command published, whoever sent it. */
async function commandsStored(): Promise<number> {
  return (await (await jetstreamManager(p.nc)).streams.info("FERRY_COMMANDS")).state.messages;
}

async function text(target: Page, selector: string): Promise<string> {
  return target.$eval(selector, (el) => (el as HTMLElement).innerText);
}

beforeAll(async () => {
  expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: bash infra/setup.sh installs Debian's chromium`).toBe(true);
  await mkdir(SHOTS, { recursive: true });
  // backupPhaseMs: the engine takes a few seconds to get a backup ready, so the Runs page is
  // open before any disk moves and everything it shows afterwards came over the live stream.
  p = await startPipeline({ labEngines: ["prd", "dr"], labTimings: { backupPhaseMs: 2000 } });
  const prd = p.lab.engines.prd!.control;
  const vm = await prd.createVm({ name: "web01", disks: [{ alias: "web01_os", size: 32 * MiB }, { alias: "web01_data", size: 16 * MiB }], status: "up" });
  await prd.writeGuestData(vm.disks[0]!.id, { offset: 0, length: 6 * MiB, seed: 1 });
  await prd.writeGuestData(vm.disks[1]!.id, { offset: 4 * MiB, length: 4 * MiB, seed: 2 });
  expect((await p.backup("web01", { timeoutMs: 120_000 })).subject).toBe("backup.completed");
  // db01 is configured but the engine has no such VM: its backup fails with VM_NOT_FOUND.
  expect((await p.backup("db01", { timeoutMs: 120_000 })).subject).toBe("backup.failed");
  await prd.writeGuestData(vm.disks[0]!.id, { offset: 12 * MiB, length: 12 * MiB, seed: 3 });

  p.nc.subscribe("backup.requested", { callback: (_e, m) => { const d = m.json<{ vm: string; id: string }>(); requested.push({ vm: d.vm, id: d.id }); } });

  const usersFile = join(p.dir, "console-users.json");
  auditFile = join(p.dir, "console-audit.jsonl");
  await putUser(usersFile, OPERATOR.user, "operator", OPERATOR.password);
  await putUser(usersFile, VIEWER.user, "viewer", VIEWER.password);
  const schedule = { days: "1111111", time: "02:00" };
  con = await startConsole({
    nc: p.nc,
    listen: "127.0.0.1:0",
    usersFile,
    auditFile,
    sessionMinutes: 60,
    policies: { web01: { enabled: true, schedule }, db01: { enabled: true, schedule } },
    timeZone: ZONE,
    storeRoot: p.storePath,
    engines: p.settings.engines,
    restore: p.settings.restore!,
    replicates: () => false,
    engineOf: () => undefined,
    caFiles: {},
    warnDays: 30,
    log: { info: (o, m) => logLines.push(`${m} ${JSON.stringify(o)}`), warn: (o, m) => logLines.push(`${m} ${JSON.stringify(o)}`), error: (o, m) => logLines.push(`${m} ${JSON.stringify(o)}`) },
  });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.setDefaultTimeout(60_000);
}, 300_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await con?.close().catch(() => undefined);
  await p?.stop();
});

describe("ferry console in headless Chromium (lab PRD + DR)", () => {
  it("console - login, then the overview shows the failed VM with its code and reason and the ok VM with its last good point", async () => {
    await login(page, OPERATOR);
    const db = await text(page, "tr[data-vm=db01]");
    expect(db).toMatch(/failed/);
    expect(db).toContain("VM_NOT_FOUND");
    expect(db).toMatch(/not found on engine prd/);
    const web = await text(page, "tr[data-vm=web01]");
    expect(web).toMatch(/\bok\b/);
    const first = (await p.wiring.store.volume.readManifest("web01"))!.restorePoints[0]!;
    expect(web).toContain(`#1 ${inZone(first.time)}`);
    // The next slot is 02:00 of the configured zone.
    expect(await text(page, "tr[data-vm=web01] td[data-label='Next slot']")).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\d 02:00 ${ZONE}$`));
    expect(await text(page, "main")).not.toMatch(/\bUTC\b/);
    const totals = await text(page, "section.totals");
    expect(totals).toMatch(/2\s*VMs/);
    expect(totals).toMatch(/1\s*ok/);
    expect(totals).toMatch(/1\s*failed/);
    // The stored-bytes chart has web01's point.
    expect(await page.$$eval("figure.chart svg circle", (c) => c.length)).toBeGreaterThan(0);
    await shot("overview");
    await page.setViewport({ width: 390, height: 844, isMobile: true });
    await page.reload({ waitUntil: "domcontentloaded" });
    await shot("overview-phone");
    await page.setViewport({ width: 1280, height: 900 });
  });

  it("console - back up now: confirmed, published, and the Runs page's progress bars reach 100% over server-sent events without a reload", { timeout: 180_000 }, async () => {
    await page.goto(`${con.url}/vm/web01`, { waitUntil: "domcontentloaded" });
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), page.click("a.button[href$='/backup?mode=auto']")]);
    expect(await text(page, "main")).toMatch(/Publish backup\.requested for web01, mode auto/);
    await shot("backup-confirm");
    const before = requested.length;
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), page.click("button.confirm")]);
    const url = new URL(page.url());
    expect(url.pathname).toBe("/runs");
    const id = url.searchParams.get("run")!;
    expect(id).toMatch(/^console-/);
    const domId = runDomId(id);
    // The card as the server rendered it: the run is live, nothing has moved yet.
    const initial = await page.$eval(`#${domId}`, (el) => (el as HTMLElement).dataset.state);
    expect(["requested", "running"]).toContain(initial);
    // Record every state of the card the live stream puts in (a reload would lose both).
    await page.evaluate((sel: string) => {
      window.__noReload = true;
      window.__seen = [];
      const record = () => {
        const el = document.getElementById(sel);
        if (el) window.__seen.push({ state: el.dataset.state, values: [...el.querySelectorAll("progress")].map((b: { value: number }) => b.value) });
      };
      new window.MutationObserver(record).observe(document.getElementById("live-runs"), { childList: true, subtree: true });
    }, domId);
    await page
      .waitForFunction(
        (sel: string) => {
          const el = document.getElementById(sel);
          const bars = el ? [...el.querySelectorAll("progress")] : [];
          return el?.dataset.state === "completed" && bars.length === 2 && bars.every((b: { value: number }) => b.value === 100);
        },
        { timeout: 100_000, polling: 200 },
        domId,
      )
      .catch(async (err: unknown) => {
        await shot("runs-timeout");
        const card = await page.$eval(`#${domId}`, (el) => (el as HTMLElement).outerHTML).catch(() => "(no card)");
        throw new Error(`the run card did not reach 100%: ${card}\nconsole log: ${logLines.slice(-5).join("\n")}`, { cause: err });
      });
    expect(await page.evaluate(() => window.__noReload)).toBe(true);
    // The bars moved while the run was running (transfer.progress), then the outcome closed it.
    const seen = (await page.evaluate(() => window.__seen)) as { state: string; values: number[] }[];
    expect(seen.some((x) => x.state === "running" && x.values.length > 0), JSON.stringify(seen)).toBe(true);
    expect(seen.at(-1)).toEqual({ state: "completed", values: [100, 100] });
    const card = await text(page, `#${domId}`);
    expect(card).toContain("web01_os");
    expect(card).toMatch(new RegExp(`done \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d ${ZONE}`));
    await shot("runs");
    // Exactly one command, the one the console published, with the id the page followed.
    expect(requested.slice(before)).toEqual([{ vm: "web01", id }]);
  });

  it("console - the VM page shows the new restore point with its chain, per-disk detail and the run's events", async () => {
    await page.goto(`${con.url}/vm/web01`, { waitUntil: "domcontentloaded" });
    expect(await page.$$eval("table.points tr[data-point]", (rows) => rows.map((r) => (r as HTMLElement).dataset.point))).toEqual(["2", "1"]);
    const newest = await text(page, "tr[data-point='2']");
    expect(newest).toMatch(/incremental/);
    expect(await page.$$eval("svg.chain circle", (c) => c.length)).toBe(2);
    expect(await page.$eval("table.points", (t) => (t as HTMLElement).textContent)).toContain("web01_data");
    expect(await text(page, "table.history")).toMatch(/completed/);
    expect(await text(page, "tr[data-point='2']")).not.toMatch(/\bok\b/); // not verified yet
    const second = (await p.wiring.store.volume.readManifest("web01"))!.restorePoints[1]!;
    expect(await text(page, "tr[data-point='2'] td[data-label=Time]")).toBe(inZone(second.time));
    expect(await text(page, "main")).not.toMatch(/\bUTC\b/);
    await shot("vm");
  });

  it("console - verify a point: confirmed, read back from the store, recorded on the point", async () => {
    await page.goto(`${con.url}/vm/web01`, { waitUntil: "load" });
    const link = await page.waitForSelector("tr[data-point='2'] a[href$='/verify?point=2']", { visible: true });
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), link!.click()]);
    expect(new URL(page.url()).pathname).toBe("/vm/web01/verify");
    await shot("verify-confirm");
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded", timeout: 120_000 }), page.click("button.confirm")]);
    const result = await text(page, "main");
    expect(result).toMatch(/Verification of web01 #2: ok/);
    expect(result).toMatch(/web01_os: ok \(\d+ blocks, 2 layers\)/);
    await page.goto(`${con.url}/vm/web01`, { waitUntil: "domcontentloaded" });
    expect(await text(page, "tr[data-point='2'] td[data-label=Verified]")).toMatch(/ok/);
  });

  it("console - restore a point to DR through the form: the preflight's plan first, then the restore runs to done", async () => {
    await page.goto(`${con.url}/vm/web01/restore?point=2`, { waitUntil: "domcontentloaded" });
    await page.$eval("input[name=name]", (el) => ((el as HTMLInputElement).value = "web01-console"));
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), page.click("form.restore button[type=submit]")]);
    const plan = await text(page, "section.plan");
    expect(plan).toMatch(/Restore point #2 .* onto dr as VM web01-console in cluster Default/s);
    expect(plan).toMatch(/disk web01_os: 32\.0 MiB virtual/);
    expect(plan).toMatch(/nothing has been changed/);
    await shot("restore-plan");
    const drBefore = (await p.wiring.engines.get("dr")!.client.vms.list()).map((v) => v.name);
    expect(drBefore).not.toContain("web01-console");
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), page.click("button.confirm")]);
    const id = new URL(page.url()).searchParams.get("run")!;
    const domId = runDomId(id);
    await page.waitForFunction((sel: string) => document.getElementById(sel)?.dataset.state === "completed", { timeout: 150_000, polling: 250 }, domId);
    expect(await text(page, `#${domId}`)).toMatch(/restore → dr/);
    await shot("restore-done");
    const drAfter = (await p.wiring.engines.get("dr")!.client.vms.list()).map((v) => v.name);
    expect(drAfter).toContain("web01-console");
  });

  it("console - run a restore test from the VM page: plan, confirm, the run boots the point on DR, and the point shows boot-tested ok; nothing is left on DR", { timeout: 180_000 }, async () => {
    await page.goto(`${con.url}/vm/web01`, { waitUntil: "load" });
    expect(await text(page, "tr[data-point='2'] td[data-label=Boot-tested]")).toBe("–");
    const link = await page.waitForSelector("tr[data-point='2'] a[href$='/restore?point=2&test=1']", { visible: true });
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), link!.click()]);
    expect(await text(page, "h1")).toBe("Restore test: web01 #2");
    expect(await page.$("input[name=name]")).toBeNull(); // a test names, starts and removes its own VM
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), page.click("form.restore button[type=submit]")]);
    expect(await text(page, "h1")).toBe("Plan: restore test of web01 #2");
    expect(await text(page, "section.plan")).toMatch(/onto dr as VM web01-restoretest-/);
    await shot("restore-test-plan");
    const drBefore = (await p.wiring.engines.get("dr")!.client.vms.list()).map((v) => v.name).sort();
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), page.click("button.confirm")]);
    const domId = runDomId(new URL(page.url()).searchParams.get("run")!);
    expect(await text(page, `#${domId}`)).toMatch(/restore test → dr/);
    await page.waitForFunction((sel: string) => ["completed", "failed"].includes(document.getElementById(sel)?.dataset.state), { timeout: 150_000, polling: 250 }, domId);
    expect(await page.$eval(`#${domId}`, (el) => (el as HTMLElement).dataset.state), await text(page, `#${domId}`)).toBe("completed");
    await page.goto(`${con.url}/vm/web01`, { waitUntil: "domcontentloaded" });
    expect(await text(page, "tr[data-point='2'] td[data-label=Boot-tested]")).toMatch(/^ok\b/);
    expect(await text(page, "tr[data-point='1'] td[data-label=Boot-tested]")).toBe("–");
    await shot("vm-boot-tested");
    // The test VM was removed again.
    expect((await p.wiring.engines.get("dr")!.client.vms.list()).map((v) => v.name).sort()).toEqual(drBefore);
  });

  it("console - the events page filters the bus by VM and kind", async () => {
    await page.goto(`${con.url}/events?vm=db01&kind=failures`, { waitUntil: "domcontentloaded" });
    const rows = await page.$$eval("table.events tbody tr", (trs) => trs.map((t) => (t as HTMLElement).innerText));
    expect(rows.length).toBe(1);
    expect(rows[0]).toMatch(/backup\.failed[\s\S]*db01[\s\S]*VM_NOT_FOUND/);
    await page.goto(`${con.url}/events?vm=web01&kind=outcomes`, { waitUntil: "domcontentloaded" });
    const outcomes = await page.$$eval("table.events tbody tr code", (cs) => cs.map((c) => c.textContent));
    expect(outcomes.filter((s) => s === "backup.completed")).toHaveLength(2);
    expect(outcomes.filter((s) => s === "restore.completed")).toHaveLength(2); // the restore and the restore test
    expect(await text(page, "table.events")).not.toMatch(/\bUTC\b/);
    expect(await text(page, "table.events tbody tr td[data-label=Time]")).toMatch(new RegExp(` ${ZONE}$`));
    await shot("events");
  });

  it("console - a viewer sees everything and is refused every action (page and POST), nothing is published, the refusal is audit-logged", async () => {
    const ctx = await browser.createBrowserContext();
    const v = await ctx.newPage();
    await v.setViewport({ width: 1280, height: 900 });
    try {
      await login(v, VIEWER);
      await v.goto(`${con.url}/vm/web01`, { waitUntil: "domcontentloaded" });
      expect(await v.$$("a[href*='/backup'], a[href*='/restore'], a[href*='/verify']")).toHaveLength(0);
      expect(await text(v, "main")).toMatch(/actions need the operator role/);
      const refused = await v.goto(`${con.url}/vm/web01/backup?mode=auto`, { waitUntil: "domcontentloaded" });
      expect(refused!.status()).toBe(403);
      expect(await text(v, "main")).toMatch(/Refused: backup needs the operator role; you are signed in as victor \(viewer\)/);
      await shot("viewer-refused", v);
      const before = requested.length;
      const stored = await commandsStored();
      // A hand-made POST with the viewer's own valid CSRF token: still refused.
      const status = await v.evaluate(async () => {
        const csrf = (document.querySelector("input[name=_csrf]") as HTMLInputElement).value;
        const r = await fetch("/vm/web01/backup", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `_csrf=${encodeURIComponent(csrf)}&mode=full` });
        return r.status;
      });
      expect(status).toBe(403);
      // And without a CSRF token the request is refused before the role is even looked at.
      const noToken = await v.evaluate(async () => (await fetch("/vm/web01/backup", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "mode=full" })).status);
      expect(noToken).toBe(403);
      // The console publishes before it answers, so after the 403s the stream says it all.
      expect(await commandsStored()).toBe(stored);
      expect(requested.length).toBe(before);
    } finally {
      await ctx.close();
    }
    const audit = (await readFile(auditFile, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit).toContainEqual(expect.objectContaining({ user: "victor", role: "viewer", action: "backup", vm: "web01", result: "refused" }));
    expect(audit).toContainEqual(expect.objectContaining({ user: "olga", role: "operator", action: "backup", vm: "web01", result: "published", detail: { mode: "auto" } }));
    expect(audit).toContainEqual(expect.objectContaining({ user: "olga", action: "restore", vm: "web01", result: "published", detail: expect.objectContaining({ target: "dr", name: "web01-console", point: 2 }) }));
    expect(audit).toContainEqual(expect.objectContaining({ user: "olga", action: "verify", vm: "web01", result: "ok", detail: expect.objectContaining({ number: 2 }) }));
    expect(audit).toContainEqual(expect.objectContaining({ user: "olga", action: "restore-test", vm: "web01", result: "published", detail: expect.objectContaining({ target: "dr", point: 2 }) }));
  });

  it("console - no secret is ever rendered or logged: engine passwords, user passwords and the session id appear on no page and in no audit line", async () => {
    const secrets = [OPERATOR.password, VIEWER.password, ...Object.values(p.settings.engines).map((e) => e.password)];
    const session = (await page.cookies()).find((c) => c.name === "ferry_session");
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe("Strict");
    secrets.push(session!.value);
    for (const path of ["/", "/vm/web01", "/vm/db01", "/runs", "/events", "/vm/web01/restore?point=1"]) {
      await page.goto(`${con.url}${path}`, { waitUntil: "domcontentloaded" });
      const htmlText = await page.content();
      for (const s of secrets) expect(htmlText.includes(s), `${path} shows a secret`).toBe(false);
    }
    const audit = await readFile(auditFile, "utf8");
    for (const s of secrets) expect(audit.includes(s)).toBe(false);
    for (const s of secrets) expect(logLines.join("\n").includes(s)).toBe(false);
  });
});
