/** A VM's network interfaces: `/vms/{vm}/nics` (VmNicsService, VmNicService). */
import { Nic, Nics, type NicInterface } from "./models.ts";
import type { CallOptions } from "./ops-vms.ts";
import type { EngineApi } from "./transport.ts";

const seg = encodeURIComponent;

export interface AddNic {
  readonly name: string;
  /** Default (engine): virtio. */
  readonly interface?: NicInterface;
  /** Default: the next address of the engine's MAC pool. */
  readonly mac?: string;
  /** Without it the NIC is on no network ("empty"). */
  readonly vnicProfileId?: string;
}

export interface UpdateNic {
  /** A profile id, or null for no profile: sent as `"vnic_profile": {}`, which the engine maps to none (NicMapper). */
  readonly vnicProfileId?: string | null;
  readonly name?: string;
  readonly interface?: NicInterface;
  /** A MAC of your choice (e.g. the source's, after an import that reassigned it); 409 when in use. */
  readonly mac?: string;
  readonly linked?: boolean;
  readonly plugged?: boolean;
}

export function nicOps(api: EngineApi) {
  return {
    list(vmId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/vms/${seg(vmId)}/nics`, signal: o.signal }, Nics);
    },

    get(vmId: string, nicId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/vms/${seg(vmId)}/nics/${seg(nicId)}`, signal: o.signal }, Nic);
    },

    add(vmId: string, spec: AddNic, o: CallOptions = {}) {
      const body: Record<string, unknown> = { name: spec.name };
      if (spec.interface !== undefined) body.interface = spec.interface;
      if (spec.mac !== undefined) body.mac = { address: spec.mac };
      if (spec.vnicProfileId !== undefined) body.vnic_profile = { id: spec.vnicProfileId };
      return api.json({ method: "POST", path: `/vms/${seg(vmId)}/nics`, body, signal: o.signal }, Nic);
    },

    update(vmId: string, nicId: string, patch: UpdateNic, o: CallOptions = {}) {
      const body: Record<string, unknown> = {};
      if (patch.vnicProfileId !== undefined) body.vnic_profile = patch.vnicProfileId === null ? {} : { id: patch.vnicProfileId };
      if (patch.name !== undefined) body.name = patch.name;
      if (patch.interface !== undefined) body.interface = patch.interface;
      if (patch.mac !== undefined) body.mac = { address: patch.mac };
      if (patch.linked !== undefined) body.linked = String(patch.linked);
      if (patch.plugged !== undefined) body.plugged = String(patch.plugged);
      return api.json({ method: "PUT", path: `/vms/${seg(vmId)}/nics/${seg(nicId)}`, body, signal: o.signal }, Nic);
    },

    remove(vmId: string, nicId: string, o: CallOptions = {}) {
      return api.send({ method: "DELETE", path: `/vms/${seg(vmId)}/nics/${seg(nicId)}`, signal: o.signal });
    },
  };
}
