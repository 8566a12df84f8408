import { PermanentError } from "../../contracts/errors.ts";

/** A schedule that cannot be understood: SCHEDULE_BAD_CRON, SCHEDULE_BAD_MASK, SCHEDULE_BAD_TIME, SCHEDULE_BAD_TIMEZONE. */
export class ScheduleError extends PermanentError {}
