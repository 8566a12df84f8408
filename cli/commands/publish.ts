import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { ConfigError, ConfigNotFoundError } from "../../config/load.ts";
import { NatsUnavailableError, provisionInfra } from "../../adapters/nats/mod.ts";
import { openSession, type Session } from "../../config/session.ts";
import { contractFor, subjects } from "../../contracts/mod.ts";
import { streamFor } from "../../infra/streams/mod.ts";
import { ExitCode, NATS_OPTION_HELP, warnTo, type Command, type CommandIO } from "../command.ts";

const usage = `Usage: ferry publish <subject> <json|-> [options]

Validate an event against its contract, then publish it. JSON '-' reads it from stdin.
When it is invalid, nothing is published: the reason is printed and the exit code is 4
(2 when the text is not JSON at all).

  ferry publish backup.requested '{"vm":"web01"}'
  ferry publish restore.requested '{"vm":"web01","checkpoint":3}' --id web01-restore-1

Options:
  --id ID          the Nats-Msg-Id (JetStream drops a second publish with the same id within
                   the stream's duplicate window). Default: the event's "id", else a new UUID.
  --json           print the ack as JSON: {"subject","stream","seq","duplicate","msgId"}
  --config FILE    config file (for the NATS settings)
  --nats URL       ${NATS_OPTION_HELP}

Subjects: ${Object.values(subjects).join(", ")}
Exit: 0 published, 2 usage (unknown subject, missing or invalid JSON), 3 NATS unreachable, 4 invalid event.
`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const command: Command = {
  name: "publish",
  summary: "validate an event against its contract and publish it",
  usage,
  async run(args: string[], io: CommandIO): Promise<number> {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        options: { id: { type: "string" }, json: { type: "boolean" }, config: { type: "string" }, nats: { type: "string" } },
      });
    } catch (err) {
      io.stderr.write(`ferry publish: ${(err as Error).message}\n`);
      return ExitCode.usage;
    }
    const [subject, body, ...extra] = parsed.positionals;
    if (!subject || body === undefined || extra.length) {
      io.stderr.write(`ferry publish: expected <subject> <json>\n\n${usage}`);
      return ExitCode.usage;
    }
    const contract = contractFor(subject);
    if (!contract || subject.includes("*") || subject.includes(">")) {
      io.stderr.write(`ferry publish: unknown subject '${subject}'. Known: ${Object.values(subjects).join(", ")}\n`);
      return ExitCode.usage;
    }
    const text = body === "-" ? await readStdin() : body;
    // Text that is not JSON at all is a wrong command line (2); JSON the contract refuses is 4.
    const checked = contract.validateText(text);
    let isJson = true;
    try {
      JSON.parse(text);
    } catch {
      isJson = false;
    }
    if (!isJson && !checked.ok) {
      // The contract's reason quotes none of the input (a secret pasted by mistake stays out).
      io.stderr.write(`ferry publish: the ${subject} event is ${checked.reason}\n`);
      return ExitCode.usage;
    }
    if (!checked.ok) {
      io.stderr.write(`ferry publish: invalid ${subject}: ${checked.reason}\n`);
      io.stderr.write(`(schema: contracts/schemas/${contract.jsonSchema.$id?.toString().split("/").pop() ?? ""})\n`);
      return ExitCode.invalid;
    }
    const event = checked.value as { id?: unknown };
    const msgId = parsed.values.id ?? (typeof event.id === "string" ? event.id : randomUUID());
    // The validated text is sent as given (byte for byte, like nats pub), not re-serialised.
    const data = text;

    let session: Session | undefined;
    try {
      session = await openSession({
        configFlag: parsed.values.config,
        natsFlag: parsed.values.nats,
        env: io.env,
        cwd: io.cwd,
        name: "ferry-publish",
        needConfig: false,
        warn: warnTo(io, "publish"),
      });
      const stream = streamFor(subject);
      let ack: { stream: string; seq: number; duplicate: boolean };
      if (!stream) {
        session.nc.publish(subject, data);
        await session.nc.flush();
        ack = { stream: "", seq: 0, duplicate: false };
      } else {
        const js = jetstream(session.nc);
        const send = () => js.publish(subject, data, { msgID: msgId, timeout: 5000 });
        try {
          ack = await send();
        } catch (err) {
          // No stream yet on a fresh server: create Ferry's streams (idempotent, replicas from
          // the config, 1 without one) and try once more. Any other failure is reported.
          const jsm = await jetstreamManager(session.nc);
          const exists = await jsm.streams.info(stream.name).then(() => true, () => false);
          if (exists) throw err;
          await provisionInfra(session.nc, jsm, { replicas: session.config.nats.replicas });
          ack = await send();
        }
      }
      if (parsed.values.json) {
        io.stdout.write(`${JSON.stringify({ subject, stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate, msgId })}\n`);
      } else if (!stream) {
        io.stdout.write(`published ${subject} (core NATS, not stored)\n`);
      } else {
        io.stdout.write(
          `published ${subject} to ${ack.stream} seq ${ack.seq}, msgId ${msgId}${ack.duplicate ? " (duplicate: already published, not stored again)" : ""}\n`,
        );
      }
      return ExitCode.ok;
    } catch (err) {
      if (err instanceof ConfigError) {
        io.stderr.write(`ferry publish: ${err.message}\n(use --nats URL to skip the config file)\n`);
        return ExitCode.invalid;
      }
      if (err instanceof ConfigNotFoundError || err instanceof NatsUnavailableError) {
        io.stderr.write(`ferry publish: ${err.message}\n`);
        return ExitCode.unavailable;
      }
      io.stderr.write(`ferry publish: publishing failed: ${err instanceof Error ? err.message : String(err)}\n`);
      return ExitCode.unavailable;
    } finally {
      if (session && !session.nc.isClosed()) await session.nc.close().catch(() => undefined);
    }
  },
};
export default command;
