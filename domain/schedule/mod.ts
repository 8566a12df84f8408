/** domain/schedule: when a VM is due (weekday mask + time, or cron) in a time zone (pure). */
export * from "./errors.ts";
export * from "./zoned.ts";
export * from "./cron.ts";
export * from "./slots.ts";
export * from "./runner.ts";
