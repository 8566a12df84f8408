/** Unit-test stand-in for a JetStream KV bucket with the same revision checks (create/update CAS). */
import type { KvEntryLike, KvLike } from "../kv-record.ts";

export function memoryKv(): KvLike & { put(k: string, data: Uint8Array): Promise<number> } {
  const m = new Map<string, KvEntryLike>();
  let seq = 0;
  return {
    async get(k) {
      return m.get(k) ?? null;
    },
    async create(k, data) {
      const cur = m.get(k);
      if (cur && cur.operation === "PUT") throw new Error("wrong last sequence: key exists");
      m.set(k, { value: data, revision: ++seq, operation: "PUT" });
      return seq;
    },
    async update(k, data, version) {
      if (m.get(k)?.revision !== version) throw new Error("wrong last sequence");
      m.set(k, { value: data, revision: ++seq, operation: "PUT" });
      return seq;
    },
    async put(k, data) {
      m.set(k, { value: data, revision: ++seq, operation: "PUT" });
      return seq;
    },
    async delete(k) {
      m.set(k, { value: new Uint8Array(), revision: ++seq, operation: "DEL" });
    },
    async keys() {
      return (async function* () {
        for (const [k, v] of m) if (v.operation === "PUT") yield k;
      })();
    },
  };
}

