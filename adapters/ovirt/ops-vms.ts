/** VMs and their disk attachments (ovirt-api.md §4, §8.3). */
import { AmbiguousNameError, EngineProtocolError } from "./errors.ts";
import { actionResult } from "./json.ts";
import { Disk, DiskAttachment, DiskAttachments, Vm, Vms } from "./models.ts";
import type { EngineApi } from "./transport.ts";

export interface CallOptions {
  readonly signal?: AbortSignal | undefined;
}

const seg = encodeURIComponent;

export interface CreateVmFromOvf {
  /** The OVF XML, as read by `getOvf`. */
  readonly ovf: string;
  readonly cluster: { readonly id: string } | { readonly name: string };
  /** A new name (required in practice when the original VM still exists in the data center). */
  readonly name?: string;
  /** Import as a new entity with a new VM id (default true). */
  readonly regenerateIds?: boolean;
  readonly configurationType?: "ovf" | "ova";
  readonly description?: string;
}

export interface AttachDisk {
  readonly diskId: string;
  readonly interface?: "virtio_scsi" | "virtio" | "ide" | "sata" | "spapr_vscsi";
  readonly bootable?: boolean;
  /** Always sent: the model says the result is undefined without it. */
  readonly active?: boolean;
  readonly passDiscard?: boolean;
}

export function vmOps(api: EngineApi) {
  const vms = {
    /** Raw engine search, e.g. `name=web*`. */
    search(search: string, o: CallOptions & { max?: number; allContent?: boolean } = {}) {
      return api.json(
        {
          method: "GET",
          path: "/vms",
          query: { search, max: o.max, all_content: o.allContent ? "true" : undefined },
          signal: o.signal,
        },
        Vms,
      );
    },

    list(o: CallOptions & { max?: number } = {}) {
      return api.json({ method: "GET", path: "/vms", query: { max: o.max }, signal: o.signal }, Vms);
    },

    /** The VM with exactly this name, or undefined. Throws AmbiguousNameError if several match. */
    async findByName(name: string, o: CallOptions & { allContent?: boolean } = {}): Promise<Vm | undefined> {
      const found = (await vms.search(`name=${name}`, o)).filter((v) => v.name === name);
      if (found.length > 1) throw new AmbiguousNameError("VM", name, found.map((v) => v.id));
      return found[0];
    },

    get(id: string, o: CallOptions & { allContent?: boolean } = {}) {
      return api.json(
        {
          method: "GET",
          path: `/vms/${seg(id)}`,
          query: { all_content: o.allContent ? "true" : undefined },
          signal: o.signal,
        },
        Vm,
      );
    },

    /** The VM's OVF (`initialization.configuration.data` with all_content=true). */
    async getOvf(id: string, o: CallOptions = {}): Promise<string> {
      const vm = await vms.get(id, { ...o, allContent: true });
      const data = vm.initialization?.configuration?.data;
      if (!data) throw new EngineProtocolError("GET", `/vms/${id}`, "no initialization.configuration.data (OVF)");
      return data;
    },

    /** POST /vms from an OVF (ImportVmFromConfiguration, blocking, 201). Fields sent here override the OVF. */
    createFromOvf(spec: CreateVmFromOvf, o: CallOptions = {}) {
      return api.json(
        {
          method: "POST",
          path: "/vms",
          body: {
            cluster: spec.cluster,
            ...(spec.name === undefined ? {} : { name: spec.name }),
            ...(spec.description === undefined ? {} : { description: spec.description }),
            initialization: {
              configuration: { type: spec.configurationType ?? "ovf", data: spec.ovf },
              regenerate_ids: String(spec.regenerateIds ?? true),
            },
          },
          signal: o.signal,
        },
        Vm,
      );
    },

    start(id: string, o: CallOptions = {}) {
      return api.json({ method: "POST", path: `/vms/${seg(id)}/start`, body: {}, signal: o.signal }, actionResult);
    },

    /** Power off. */
    stop(id: string, o: CallOptions & { force?: boolean } = {}) {
      const body = o.force ? { force: "true" } : {};
      return api.json({ method: "POST", path: `/vms/${seg(id)}/stop`, body, signal: o.signal }, actionResult);
    },

    /** Guest shutdown. */
    shutdown(id: string, o: CallOptions = {}) {
      return api.json({ method: "POST", path: `/vms/${seg(id)}/shutdown`, body: {}, signal: o.signal }, actionResult);
    },

    /** DELETE /vms/{id}; `detachOnly` keeps the disks. */
    remove(id: string, o: CallOptions & { detachOnly?: boolean; force?: boolean } = {}) {
      return api.send({
        method: "DELETE",
        path: `/vms/${seg(id)}`,
        query: { detach_only: o.detachOnly ? "true" : undefined, force: o.force ? "true" : undefined },
        signal: o.signal,
      });
    },
  };

  const diskAttachments = {
    list(vmId: string, o: CallOptions = {}) {
      return api.json({ method: "GET", path: `/vms/${seg(vmId)}/diskattachments`, signal: o.signal }, DiskAttachments);
    },

    /** The VM's attachments with each disk read in full (GET /disks/{id}), in attachment order. */
    async listWithDisks(vmId: string, o: CallOptions = {}): Promise<Array<{ attachment: DiskAttachment; disk: Disk }>> {
      const attachments = await diskAttachments.list(vmId, o);
      const out: Array<{ attachment: DiskAttachment; disk: Disk }> = [];
      for (const attachment of attachments) {
        const inline = attachment.disk;
        const disk =
          "provisioned_size" in inline
            ? inline
            : await api.json({ method: "GET", path: `/disks/${seg(inline.id)}`, signal: o.signal }, Disk);
        out.push({ attachment, disk });
      }
      return out;
    },

    attach(vmId: string, a: AttachDisk, o: CallOptions = {}) {
      return api.json(
        {
          method: "POST",
          path: `/vms/${seg(vmId)}/diskattachments`,
          body: {
            disk: { id: a.diskId },
            interface: a.interface ?? "virtio_scsi",
            bootable: String(a.bootable ?? false),
            active: String(a.active ?? true),
            pass_discard: String(a.passDiscard ?? false),
          },
          signal: o.signal,
        },
        DiskAttachment,
      );
    },

    /** Detaches only (detach_only defaults to true on the engine); the disk stays. */
    detach(vmId: string, diskId: string, o: CallOptions = {}) {
      return api.send({ method: "DELETE", path: `/vms/${seg(vmId)}/diskattachments/${seg(diskId)}`, signal: o.signal });
    },
  };

  return { vms, diskAttachments };
}
