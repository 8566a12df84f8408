import type { Engine } from "../engine.ts";
import { NotFound, ok, pathId } from "../http.ts";
import {
  collection,
  encodeCluster,
  encodeDataCenter,
  encodeHost,
  encodeNetwork,
  encodeStorageDomain,
  encodeVnicProfile,
  href,
  ref,
  S,
} from "../json.ts";
import type { Router } from "../router.ts";
import { matchesSearch, searchParams } from "../search.ts";

/** API root, data center, clusters, storage domains, the one host, networks and vNIC profiles. */
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
    const { search, caseSensitive, max } = searchParams(ctx.query);
    let list = e.st.clusters.filter((c) => matchesSearch(search, { name: c.name, id: c.id }, { caseSensitive }));
    if (max !== undefined) list = list.slice(0, max);
    return ok(collection("cluster", list.map((c) => encodeCluster(c, e.st))));
  });
  const clusterOf = (ctx: Parameters<typeof pathId>[0]) => {
    const id = pathId(ctx, "id");
    const c = e.st.clusters.find((x) => x.id === id);
    if (!c) throw new NotFound();
    return c;
  };
  r.get("/clusters/:id", (ctx) => ok(encodeCluster(clusterOf(ctx), e.st)));
  // Every network of the data center is attached to every cluster in the lab.
  r.get("/clusters/:id/networks", (ctx) => {
    clusterOf(ctx);
    return ok(collection("network", e.st.networks.map((n) => encodeNetwork(n, e.st))));
  });

  r.get("/storagedomains", (ctx) => {
    const { search, caseSensitive, max } = searchParams(ctx.query);
    let list = e.st.storageDomains.filter((sd) => matchesSearch(search, { name: sd.name, id: sd.id }, { caseSensitive }));
    if (max !== undefined) list = list.slice(0, max);
    return ok(collection("storage_domain", list.map((sd) => encodeStorageDomain(sd, e.st))));
  });
  r.get("/storagedomains/:id", (ctx) => {
    const id = pathId(ctx, "id");
    const sd = e.st.storageDomains.find((s) => s.id === id);
    if (!sd) throw new NotFound();
    return ok(encodeStorageDomain(sd, e.st));
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

  r.get("/vnicprofiles", (ctx) => {
    const { max } = searchParams(ctx.query);
    let list = e.st.vnicProfiles;
    if (max !== undefined) list = list.slice(0, max);
    return ok(collection("vnic_profile", list.map(encodeVnicProfile)));
  });
  r.get("/vnicprofiles/:id", (ctx) => {
    const id = pathId(ctx, "id");
    const p = e.st.vnicProfiles.find((x) => x.id === id);
    if (!p) throw new NotFound();
    return ok(encodeVnicProfile(p));
  });
  r.get("/networks", (ctx) => {
    const { search, caseSensitive, max } = searchParams(ctx.query);
    let list = e.st.networks.filter((n) => matchesSearch(search, { name: n.name, id: n.id }, { caseSensitive }));
    if (max !== undefined) list = list.slice(0, max);
    return ok(collection("network", list.map((n) => encodeNetwork(n, e.st))));
  });
  const networkOf = (ctx: Parameters<typeof pathId>[0]) => {
    const id = pathId(ctx, "id");
    const n = e.st.networks.find((x) => x.id === id);
    if (!n) throw new NotFound();
    return n;
  };
  r.get("/networks/:id", (ctx) => ok(encodeNetwork(networkOf(ctx), e.st)));
  r.get("/networks/:id/vnicprofiles", (ctx) => {
    const n = networkOf(ctx);
    return ok(collection("vnic_profile", e.st.vnicProfiles.filter((p) => p.networkId === n.id).map(encodeVnicProfile)));
  });
  r.get("/templates", () =>
    ok(collection("template", [{ id: e.st.ids.template, href: href(`/templates/${e.st.ids.template}`), name: "Blank", description: "Blank template" }])),
  );
}
