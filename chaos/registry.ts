/** Every chaos case, in the order of value (issue 11); `npm run -s chaos -- --list` prints them. */
import type { ChaosCase } from "./case.ts";
import { clusterLeaders, natsKill } from "./cases/bus.ts";
import { engine503, engineRestart, imageioStall, ticketExpiry } from "./cases/engine.ts";
import { duplicates, fiveCommands, forgedEvents, garbageInput } from "./cases/input.ts";
import { killAfterBackupStart, killAfterStoreWrite, killMidDownload, killMidRetention, killOnLastDelivery, restoreKillMidUpload } from "./cases/process.ts";
import { soak } from "./cases/soak.ts";
import { twoDeployments } from "./cases/deployments.ts";
import { corruptLayer, storeFull, storeReadOnly } from "./cases/store.ts";
import { transferSigint, transferSigterm, uploadSigterm } from "./cases/transfer.ts";

export const CASES: readonly ChaosCase[] = [
  natsKill,
  clusterLeaders,
  killAfterBackupStart,
  killMidDownload,
  killAfterStoreWrite,
  killOnLastDelivery,
  killMidRetention,
  engine503,
  engineRestart,
  imageioStall,
  ticketExpiry,
  duplicates,
  fiveCommands,
  garbageInput,
  forgedEvents,
  corruptLayer,
  storeFull,
  storeReadOnly,
  twoDeployments,
  transferSigint,
  transferSigterm,
  uploadSigterm,
  restoreKillMidUpload,
  soak,
];
