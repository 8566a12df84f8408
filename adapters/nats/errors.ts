/**
 * What a JetStream API error means, from its typed code: the server's `err_code` (and the
 * HTTP-like status beside it), never the English of its description.
 */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

/** The stream or consumer asked about does not exist (yet). */
export function isMissingResource(err: unknown): boolean {
  if (!(err instanceof JetStreamApiError)) return false;
  return err.code === JetStreamApiCodes.StreamNotFound || err.code === JetStreamApiCodes.ConsumerNotFound || err.status === 404;
}
