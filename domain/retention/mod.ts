/** domain/retention: which restore points a policy keeps, and a chain-safe plan to remove the rest (pure). */
export * from "./policy.ts";
export * from "./plan.ts";
