/**
 * vitest globalSetup: one nats-server for the whole run. Tests read the URL with
 * `inject("natsUrl")` (import { inject } from "vitest") and must use unique stream/consumer
 * names or their own server (startNatsServer) when they provision the standard FERRY_* streams.
 */
import type { TestProject } from "vitest/node";
import { startNatsServer, type NatsServer } from "./nats-server.ts";

let server: NatsServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startNatsServer();
  project.provide("natsUrl", server.url);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}

declare module "vitest" {
  export interface ProvidedContext {
    natsUrl: string;
  }
}
