import path from "node:path";
import { describe, expect, it } from "vitest";
import { trustedCaFiles } from "./metrics.ts";

describe("metrics", () => {
  it("trustedCaFiles - caFile, else certs/<engine>-ca.pem beside the config file (or in cwd); insecure engines trust no CA", () => {
    const engines = {
      prd: { url: "https://prd.example.com", caFile: "/etc/pki/prd.pem" },
      dr: { url: "https://dr.example.com" },
      lab: { url: "https://lab.example.com", insecure: true },
    };
    expect(trustedCaFiles({ engines, file: "/etc/ferry/ferry.json" })).toEqual({ prd: "/etc/pki/prd.pem", dr: "/etc/ferry/certs/dr-ca.pem" });
    expect(trustedCaFiles({ engines }, "/srv/ferry")).toEqual({ prd: "/etc/pki/prd.pem", dr: path.join("/srv/ferry", "certs", "dr-ca.pem") });
  });
});
