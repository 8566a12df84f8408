/**
 * Publishing a command the way `ferry backup` / `ferry restore` do: validate it against its
 * contract (a refusal publishes nothing), then publish it to JetStream with its `id` as the
 * Nats-Msg-Id, so a double submit within the duplicate window is one command. Used by the
 * console and by `ferry backup` / `ferry restore`, so both publish the same command the same way.
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Contract } from "../../contracts/define.ts";

/** The command failed its contract: `reason` says which field and why. Nothing was published. */
export class CommandInvalidError extends Error {
  override readonly name = "CommandInvalidError";
  readonly subject: string;
  readonly reason: string;
  constructor(
    subject: string,
    reason: string,
  ) {
    super(`invalid ${subject}: ${reason}`);
    this.subject = subject;
    this.reason = reason;
  }
}

export interface PublishedCommand<T> {
  readonly subject: string;
  readonly command: T;
  readonly seq: number;
  /** JetStream already had a command with this id (within the duplicate window): not stored again. */
  readonly duplicate: boolean;
}

export async function publishCommand<T extends { id?: string | undefined }>(nc: NatsConnection, contract: Pick<Contract<T>, "subject" | "validate">, command: T & { id: string }): Promise<PublishedCommand<T & { id: string }>> {
  const v = contract.validate(command);
  if (!v.ok) throw new CommandInvalidError(contract.subject, v.reason);
  const ack = await jetstream(nc).publish(contract.subject, JSON.stringify(command), { msgID: command.id, timeout: 5000 });
  return { subject: contract.subject, command, seq: ack.seq, duplicate: ack.duplicate };
}
