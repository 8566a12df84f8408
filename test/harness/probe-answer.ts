/** What the test probe function (test/fixtures/functions/probe) says in its answer's runId: who handled it, on which delivery. */
export function probeAnswer(data: Record<string, unknown>): { handledBy: number; deliveryCount: number } {
  const m = /^probe:(\d+):(\d+)$/.exec(String(data.runId));
  if (!m) throw new Error(`not a probe answer: runId ${JSON.stringify(data.runId)}`);
  return { handledBy: Number(m[1]), deliveryCount: Number(m[2]) };
}
