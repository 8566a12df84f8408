import { defineConfig } from "vitest/config";

// Integration tests: real nats-server, qemu-img/qemu-nbd, nbdkit and the lab engines.
// `*.int.test.ts` beside the code and everything under test/.
export default defineConfig({
  test: {
    include: ["**/*.int.test.ts", "test/**/*.test.ts"],
    exclude: ["node_modules/**"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    fileParallelism: true,
  },
});
