/** domain/chain: the restore point model of one VM (pure). See README.md. */
export * from "./schema.ts";
export * from "./naming.ts";
export * from "./errors.ts";
export * from "./chain.ts";
