/** Disks (ovirt-api.md §4.5, §8.1) and the infrastructure lookups a restore needs. */
import { AmbiguousNameError } from "./errors.ts";
import { Cluster, Clusters, Disk, Disks, Network, Networks, StorageDomain, StorageDomains, VnicProfile, VnicProfiles } from "./models.ts";
import type { CallOptions } from "./ops-vms.ts";
import type { EngineApi } from "./transport.ts";

const seg = encodeURIComponent;

export interface CreateDisk {
  /** Alias of the new disk. */
  readonly name: string;
  readonly provisionedSize: number;
  readonly format: "cow" | "raw";
  /** Thin (default true). cow + preallocated is valid only with backup=incremental. */
  readonly sparse?: boolean;
  /** `incremental` so the copy can itself be backed up (not allowed for raw). */
  readonly backup?: "incremental" | "none";
  readonly storageDomain: { readonly id: string } | { readonly name: string };
  /** Initial allocation for sparse qcow2 on block storage (qemu-img measure `required`). */
  readonly initialSize?: number;
  /** Reuse an identity (e.g. the original disk id, so an OVF import attaches it by itself). */
  readonly id?: string;
  readonly description?: string;
  readonly contentType?: string;
  readonly wipeAfterDelete?: boolean;
}

export interface UpdateDisk {
  readonly alias?: string;
  readonly description?: string;
  readonly qcowVersion?: "qcow2_v2" | "qcow2_v3";
  readonly provisionedSize?: number;
  readonly backup?: "incremental" | "none";
}

function named<T extends { id: string; name: string }>(kind: string, name: string, items: T[]): T | undefined {
  const found = items.filter((i) => i.name === name);
  if (found.length > 1) throw new AmbiguousNameError(kind, name, found.map((i) => i.id));
  return found[0];
}

export function diskOps(api: EngineApi) {
  const disks = {
    get(id: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/disks/${seg(id)}`, signal: o.signal }, Disk);
    },

    list(o: CallOptions & { search?: string; max?: number } = {}) {
      return api.json({ method: "GET", path: "/disks", query: { search: o.search, max: o.max }, signal: o.signal }, Disks);
    },

    /** POST /disks (a floating disk). The answer is usually `locked`; wait with waitForDiskOk. */
    create(spec: CreateDisk, o: CallOptions = {}) {
      const body: Record<string, unknown> = {
        name: spec.name,
        alias: spec.name,
        format: spec.format,
        sparse: String(spec.sparse ?? true),
        provisioned_size: String(spec.provisionedSize),
        storage_domains: { storage_domain: [spec.storageDomain] },
      };
      if (spec.backup !== undefined) body.backup = spec.backup;
      if (spec.initialSize !== undefined) body.initial_size = String(spec.initialSize);
      if (spec.id !== undefined) body.id = spec.id;
      if (spec.description !== undefined) body.description = spec.description;
      if (spec.contentType !== undefined) body.content_type = spec.contentType;
      if (spec.wipeAfterDelete !== undefined) body.wipe_after_delete = String(spec.wipeAfterDelete);
      return api.json({ method: "POST", path: "/disks", body, signal: o.signal }, Disk);
    },

    update(id: string, patch: UpdateDisk, o: CallOptions = {}) {
      const body: Record<string, unknown> = {};
      if (patch.alias !== undefined) body.alias = patch.alias;
      if (patch.description !== undefined) body.description = patch.description;
      if (patch.qcowVersion !== undefined) body.qcow_version = patch.qcowVersion;
      if (patch.provisionedSize !== undefined) body.provisioned_size = String(patch.provisionedSize);
      if (patch.backup !== undefined) body.backup = patch.backup;
      return api.json({ method: "PUT", path: `/disks/${seg(id)}`, body, signal: o.signal }, Disk);
    },

    remove(id: string, o: CallOptions = {}) {
      return api.send({ method: "DELETE", path: `/disks/${seg(id)}`, signal: o.signal });
    },
  };

  const storageDomains = {
    list(o: CallOptions & { search?: string } = {}) {
      return api.json(
        { method: "GET", path: "/storagedomains", query: { search: o.search }, signal: o.signal },
        StorageDomains,
      );
    },
    get(id: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/storagedomains/${seg(id)}`, signal: o.signal }, StorageDomain);
    },
    async findByName(name: string, o: CallOptions = {}): Promise<StorageDomain | undefined> {
      return named("storage domain", name, await storageDomains.list({ ...o, search: `name=${name}` }));
    },
  };

  const clusters = {
    list(o: CallOptions & { search?: string } = {}) {
      return api.json({ method: "GET", path: "/clusters", query: { search: o.search }, signal: o.signal }, Clusters);
    },
    get(id: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/clusters/${seg(id)}`, signal: o.signal }, Cluster);
    },
    async findByName(name: string, o: CallOptions = {}): Promise<Cluster | undefined> {
      return named("cluster", name, await clusters.list({ ...o, search: `name=${name}` }));
    },
  };

  /** Every vNIC profile of the engine; `network.id` says which network each belongs to. */
  const vnicProfiles = {
    list(o: CallOptions = {}) {
      return api.json({ method: "GET", path: "/vnicprofiles", signal: o.signal }, VnicProfiles);
    },
    get(id: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/vnicprofiles/${seg(id)}`, signal: o.signal }, VnicProfile);
    },
  };

  /** Logical networks (GET /networks: every data center's). */
  const networks = {
    list(o: CallOptions & { search?: string } = {}) {
      return api.json({ method: "GET", path: "/networks", query: { search: o.search }, signal: o.signal }, Networks);
    },
    get(id: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/networks/${seg(id)}`, signal: o.signal }, Network);
    },
    /** The network with exactly this name, or undefined (AmbiguousNameError if several data centers have one). */
    async findByName(name: string, o: CallOptions = {}): Promise<Network | undefined> {
      return named("network", name, await networks.list({ ...o, search: `name=${name}` }));
    },
  };

  return { disks, storageDomains, clusters, vnicProfiles, networks };
}
