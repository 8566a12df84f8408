import { describe, expect, it } from "vitest";
import { isPermanent } from "../../contracts/errors.ts";
import {
  AlreadyFinalizedError,
  CheckpointInvalidError,
  CheckpointMissingError,
  DuplicateEventError,
  DuplicateIdError,
  EngineConflictError,
  EngineFaultError,
  EngineServerError,
  EngineTlsError,
  IncrementalUnsupportedError,
  NotFoundError,
  VmLockedError,
  engineFaultError,
} from "./errors.ts";

const f = (status: number, method: string, path: string, detail: string) => ({ status, reason: "Operation Failed", detail, method, path });

// Each row: an answer as ovirt-api.md §1.4/§5/§9 documents it → the typed outcome.
const rows: [string, ReturnType<typeof f>, new (...a: never[]) => Error, string][] = [
  ["unknown checkpoint", f(400, "POST", "/vms/v1/backups", "[Cannot backup VM. Checkpoint ID 3f2 doesn't exist.]"), CheckpointInvalidError, "ENGINE_CHECKPOINT_INVALID"],
  ["invalid checkpoint", f(400, "POST", "/vms/v1/backups", "[Cannot backup VM. Checkpoint ID 3f2 is invalid and should be removed.]"), CheckpointInvalidError, "ENGINE_CHECKPOINT_INVALID"],
  ["disk not in the previous backup (cluster < 4.5)", f(400, "POST", "/vms/v1/backups", "[Cannot backup VM. The following disks are not included in the previous VM backup: d1. Please use a full VM backup]"), CheckpointInvalidError, "ENGINE_CHECKPOINT_INVALID"],
  ["incremental disabled", f(400, "POST", "/vms/v1/backups", "[Cannot backup VM. Incremental backup is not supported.]"), IncrementalUnsupportedError, "ENGINE_INCREMENTAL_UNSUPPORTED"],
  ["no backup API", f(404, "POST", "/vms/v1/backups", ""), IncrementalUnsupportedError, "ENGINE_NO_BACKUP_API"],
  ["backup id exists", f(400, "POST", "/vms/v1/backups", "[Cannot backup VM. The specified VM backup ID b1 already exists.]"), DuplicateIdError, "ENGINE_DUPLICATE_ID"],
  ["another backup running", f(409, "POST", "/vms/v1/backups", "[Cannot backup VM. The VM is during a backup operation.]"), VmLockedError, "ENGINE_VM_LOCKED"],
  ["locked disks", f(409, "POST", "/vms/v1/backups", "[Cannot backup VM. The following disks are locked: d1. Please try again in a few minutes.]"), VmLockedError, "ENGINE_VM_LOCKED"],
  ["VM in preview (other 409)", f(409, "POST", "/vms/v1/backups", "[Cannot backup VM. VM is in preview]"), EngineConflictError, "ENGINE_CONFLICT"],
  ["finalize again", f(400, "POST", "/vms/v1/backups/b1/finalize", "[VM 'web01' backup 'b1' is already in 'FINALIZING' phase, no need to stop the backup again]"), AlreadyFinalizedError, "ENGINE_ALREADY_FINALIZED"],
  ["delete a missing checkpoint", f(400, "DELETE", "/vms/v1/checkpoints/c1", "[Cannot remove checkpoint. Checkpoint ID c1 doesn't exist.]"), CheckpointMissingError, "ENGINE_CHECKPOINT_MISSING"],
  ["duplicate custom_id", f(400, "POST", "/events", "[External Event with this custom id already exists.]"), DuplicateEventError, "ENGINE_DUPLICATE_EVENT"],
  ["plain 404", f(404, "GET", "/vms/v1", ""), NotFoundError, "ENGINE_NOT_FOUND"],
  ["plain 400", f(400, "POST", "/disks", "Disk [provisionedSize|size, format] required for add"), EngineFaultError, "ENGINE_FAULT"],
  ["500", f(500, "GET", "/vms", ""), EngineServerError, "ENGINE_SERVER"],
  // The same words on another call are not that outcome: the path and method decide too.
  ["'already exists' elsewhere", f(400, "POST", "/vms/v1/snapshots", "[already exists]"), EngineFaultError, "ENGINE_FAULT"],
];

describe("engine fault classification", () => {
  it.each(rows)("engineFaultError - %s", (_name, fault, cls, code) => {
    const err = engineFaultError(fault);
    expect(err).toBeInstanceOf(cls);
    expect(err.constructor).toBe(cls);
    expect(err).toMatchObject({ code, status: fault.status, detail: fault.detail });
  });

  it("engineFaultError - typed outcomes keep their retry class (locked is transient, refusals permanent)", () => {
    expect(isPermanent(engineFaultError(rows[6]![1]))).toBe(false);
    expect(isPermanent(engineFaultError(rows[0]![1]))).toBe(true);
  });
});

describe("EngineTlsError", () => {
  it("EngineTlsError - the hint is a command that runs as printed (doctor names the engine and the --accept to use)", () => {
    const err = new EngineTlsError("https://engine.example.com", Object.assign(new Error("unable to verify"), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }));
    expect(err.code).toBe("ENGINE_TLS");
    expect(err.message).toBe(
      "TLS verification of https://engine.example.com failed (UNABLE_TO_VERIFY_LEAF_SIGNATURE); is the engine CA current? `ferry doctor --check certs` shows the CA the engine serves and the command that trusts it",
    );
    expect(err.message).not.toMatch(/`ferry cert fetch`/);
  });
});
