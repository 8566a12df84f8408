/**
 * The console's users: a local JSON file (`console.usersFile`, mode 0600) of names, roles and
 * scrypt password hashes, written by `ferry console adduser`. A user named like
 * `admin@internal` may be listed without a hash: the engine's SSO (`console.ssoEngine`) checks
 * the password, the file still decides the role. The file is re-read at every login, so a new
 * user needs no restart.
 *
 *   { "users": { "alice": { "role": "operator", "password": "scrypt$16384$8$1$<salt>$<hash>" },
 *                "admin@internal": { "role": "viewer", "sso": true } } }
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";

export const ROLES = ["viewer", "operator"] as const;
export type Role = (typeof ROLES)[number];

/** Letters, digits, '.', '_', '-' and one '@domain' part (engine users are admin@internal). */
export const USER_NAME = /^[A-Za-z0-9._-]{1,64}(@[A-Za-z0-9._-]{1,64})?$/;
export const MIN_PASSWORD = 8;

const KEYLEN = 32;
const COST = { N: 16384, r: 8, p: 1 } as const;

/** The users file is missing a piece, unreadable or malformed: `message` is one line. */
export class UsersFileError extends Error {
  override readonly name = "UsersFileError";
}

const UserEntry = z.strictObject({
  role: z.enum(ROLES),
  password: z.string().regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/, "not a hash written by ferry console adduser").optional(),
  sso: z.literal(true).optional(),
});
const UsersDoc = z.strictObject({ users: z.record(z.string().regex(USER_NAME), UserEntry) });
export type UserEntry = z.infer<typeof UserEntry>;

function scrypt(password: string, salt: Buffer, keylen: number, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, { ...o, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEYLEN, COST);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString("base64url")}$${key.toString("base64url")}`;
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const [kind, n, r, p, salt, hash] = encoded.split("$");
  if (kind !== "scrypt" || !salt || !hash) return false;
  const expected = Buffer.from(hash, "base64url");
  const key = await scrypt(password, Buffer.from(salt, "base64url"), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** The users in `file`; an empty table when the file does not exist yet. */
export async function readUsers(file: string): Promise<Record<string, UserEntry>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new UsersFileError(`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new UsersFileError(`${file}: not valid JSON`);
  }
  const parsed = UsersDoc.safeParse(doc);
  if (!parsed.success) throw new UsersFileError(`${file}: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return parsed.data.users;
}

/**
 * Add or replace a user. A local user needs a password (at least MIN_PASSWORD characters); an
 * SSO user (name with '@') gets none. Written atomically, mode 0600.
 */
export async function putUser(file: string, name: string, role: Role, password: string | undefined): Promise<void> {
  if (!USER_NAME.test(name)) throw new UsersFileError(`'${name.slice(0, 80)}' is not a user name (letters, digits, '.', '_', '-', optionally @domain)`);
  if (!ROLES.includes(role)) throw new UsersFileError(`role must be ${ROLES.join(" or ")}`);
  let entry: UserEntry;
  if (password === undefined) {
    if (!name.includes("@")) throw new UsersFileError(`${name}: a local user needs a password (only engine users like admin@internal log in through SSO)`);
    entry = { role, sso: true };
  } else {
    if (password.length < MIN_PASSWORD) throw new UsersFileError(`the password needs at least ${MIN_PASSWORD} characters`);
    entry = { role, password: await hashPassword(password) };
  }
  const users = { ...(await readUsers(file)), [name]: entry };
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify({ users }, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

export interface Identity {
  readonly user: string;
  readonly role: Role;
}

export interface Authenticator {
  /** The identity for a name and password, or undefined (unknown user, wrong password, SSO refused). */
  authenticate(name: string, password: string): Promise<Identity | undefined>;
}

/**
 * Logins against the users file, and against the engine's SSO for SSO users. `ssoCheck`
 * resolves true when the engine accepted the password (console/sso.ts).
 */
export function createAuthenticator(o: { usersFile: string; ssoCheck?: ((user: string, password: string) => Promise<boolean>) | undefined }): Authenticator {
  // A fixed hash to compare against for unknown users, so a miss costs as much as a hit.
  const decoy = hashPassword(randomBytes(12).toString("hex"));
  return {
    async authenticate(name, password) {
      if (!USER_NAME.test(name) || password.length === 0 || password.length > 1024) return undefined;
      const entry = (await readUsers(o.usersFile))[name];
      if (!entry) {
        await verifyPassword(password, await decoy);
        return undefined;
      }
      if (entry.sso) {
        if (!o.ssoCheck || !name.includes("@")) return undefined;
        return (await o.ssoCheck(name, password)) ? { user: name, role: entry.role } : undefined;
      }
      return entry.password && (await verifyPassword(password, entry.password)) ? { user: name, role: entry.role } : undefined;
    },
  };
}
