import { defineConfig } from "vitest/config";

// Integration tests: real nats-server, qemu-img/qemu-nbd, nbdkit and the lab engines.
// `*.int.test.ts` beside the code and everything under test/.
export default defineConfig({
  test: {
    include: ["**/*.int.test.ts", "test/**/*.test.ts"],
    exclude: ["node_modules/**"],
    // Real qemu and lab work on 2 cores: the longest cases take 80-95 s alone and up to twice that
    // while another file runs beside them (CI timed out three at 120 s under load). A hang still fails.
    testTimeout: 240_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    fileParallelism: true,
  },
});
