import type { Engine } from "../engine.ts";
import { NotFound, ok, pathId } from "../http.ts";
import {
  collection,
  encodeCluster,
  encodeDataCenter,
  encodeHost,
  encodeStorageDomain,
  encodeVnicProfile,
  href,
  ref,
  S,
  volumeSize,
} from "../json.ts";
import type { Router } from "../router.ts";
import { matchesSearch, searchParams } from "../search.ts";

/** API root, data center, cluster, storage domains, the one host, vNIC profiles. */
export function registerSystem(r: Router, e: Engine): void {
  const hostName = `${e.name}-host1`;

  r.get("/", () => {
    const vmsUp = e.st.vms.filter((v) => v.status === "up").length;
    const rels = [
      "clusters", "datacenters", "disks", "events", "hosts", "imagetransfers", "networks", "storagedomains",
      "templates", "users", "vms", "vnicprofiles", "jobs", "tags",
    ];
    return ok({
      product_info: {
        name: "oVirt Engine",
        vendor: "ovirt.org",
        version: { build: "5", full_version: "4.5.5-1.el8", major: "4", minor: "5", revision: "0" },
        instance_id: e.st.ids.instance,
      },
      special_objects: {
        blank_template: ref("templates", e.st.ids.template),
        root_tag: ref("tags", "00000000-0000-0000-0000-000000000000"),
      },
      summary: {
        hosts: { active: "1", total: "1" },
        storage_domains: { active: S(e.st.storageDomains.length), total: S(e.st.storageDomains.length) },
        users: { active: "1", total: "1" },
        vms: { active: S(vmsUp), total: S(e.st.vms.length) },
      },
      time: Date.now(),
      authenticated_user: ref("users", e.st.ids.adminUser),
      effective_user: ref("users", e.st.ids.adminUser),
      link: rels.flatMap((rel) => [
        { href: href(`/${rel}`), rel },
        ...(["vms", "disks", "events", "hosts", "clusters", "storagedomains", "datacenters"].includes(rel)
          ? [{ href: href(`/${rel}?search={query}`), rel: `${rel}/search` }]
          : []),
      ]),
    });
  });

  r.get("/datacenters", () => ok(collection("data_center", [encodeDataCenter(e.st)])));
  r.get("/datacenters/:id", (ctx) => {
    if (pathId(ctx, "id") !== e.st.ids.dataCenter) throw new NotFound();
    return ok(encodeDataCenter(e.st));
  });

  r.get("/clusters", (ctx) => {
    const { search, caseSensitive } = searchParams(ctx.query);
    const list = matchesSearch(search, { name: "Default", id: e.st.ids.cluster }, { caseSensitive }) ? [encodeCluster(e.st)] : [];
    return ok(collection("cluster", list));
  });
  r.get("/clusters/:id", (ctx) => {
    if (pathId(ctx, "id") !== e.st.ids.cluster) throw new NotFound();
    return ok(encodeCluster(e.st));
  });

  const used = (sdId: string) =>
    e.st.disks.filter((d) => d.storageDomainId === sdId).reduce((n, d) => n + d.volumes.reduce((m, v) => m + volumeSize(v), 0), 0);

  r.get("/storagedomains", (ctx) => {
    const { search, caseSensitive } = searchParams(ctx.query);
    const list = e.st.storageDomains
      .filter((sd) => matchesSearch(search, { name: sd.name, id: sd.id }, { caseSensitive }))
      .map((sd) => encodeStorageDomain(sd, e.st, used(sd.id)));
    return ok(collection("storage_domain", list));
  });
  r.get("/storagedomains/:id", (ctx) => {
    const id = pathId(ctx, "id");
    const sd = e.st.storageDomains.find((s) => s.id === id);
    if (!sd) throw new NotFound();
    return ok(encodeStorageDomain(sd, e.st, used(sd.id)));
  });

  r.get("/hosts", (ctx) => {
    const { search, caseSensitive } = searchParams(ctx.query);
    const list = matchesSearch(search, { name: hostName, id: e.st.ids.host, status: "up" }, { caseSensitive })
      ? [encodeHost(e.st, hostName)]
      : [];
    return ok(collection("host", list));
  });
  r.get("/hosts/:id", (ctx) => {
    if (pathId(ctx, "id") !== e.st.ids.host) throw new NotFound();
    return ok(encodeHost(e.st, hostName));
  });

  r.get("/vnicprofiles", () => ok(collection("vnic_profile", [encodeVnicProfile(e.st)])));
  r.get("/vnicprofiles/:id", (ctx) => {
    if (pathId(ctx, "id") !== e.st.ids.vnicProfile) throw new NotFound();
    return ok(encodeVnicProfile(e.st));
  });
  r.get("/networks", () =>
    ok(collection("network", [{ id: e.st.ids.network, href: href(`/networks/${e.st.ids.network}`), name: "ovirtmgmt", data_center: ref("datacenters", e.st.ids.dataCenter) }])),
  );
  r.get("/templates", () =>
    ok(collection("template", [{ id: e.st.ids.template, href: href(`/templates/${e.st.ids.template}`), name: "Blank", description: "Blank template" }])),
  );
}
