import { defineConfig } from "vitest/config";

// Unit tests: `*.test.ts` beside the code. No servers, no child processes beyond quick tools.
export default defineConfig({
  test: {
    include: ["{contracts,functions,pipeline,adapters,cli,lab,domain,infra,config,dataplane,ingress}/**/*.test.ts"],
    exclude: ["**/*.int.test.ts", "node_modules/**"],
    testTimeout: 20_000,
  },
});
