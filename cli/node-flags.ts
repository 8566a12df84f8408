/**
 * The V8 flags every Ferry process starts with (the `ferry` shebang, the systemd units and the
 * Dockerfile carry the same; test/setup-deploy-files checks they agree).
 *
 * --max-semi-space-size=8: V8's young generation otherwise grows to 64 MiB (2 x 32 MiB
 * semi-spaces here) under a worker's stream of short-lived objects (NATS messages, JSON, engine
 * answers). It is a start-up flag: set from inside (v8.setFlagsFromString) it does not resize the
 * heap. Measured on the quiet 2-core box (load 1.4-3.3), 2026-12-02:
 * - backup worker, nightly bench (12 VMs x 2 disks, backupsPerEngine 1): peak RSS 321-329 MiB by
 *   default (idle 136), 197 with 8, 173-177 with 4 or 1; seconds per VM 3.1-3.3 in every case;
 * - 2 GiB download (bench child): default 12.3 / 14.9 s, 181-186 MiB, 4.3-5.9 CPU-s/GiB;
 *   8: 11.5 / 13.2 s, 162-165 MiB, 3.8-4.8 CPU-s/GiB; 4: 14.5 / 15.9 s, 150-152 MiB, 5.7-5.8
 *   CPU-s/GiB (scavenges of a 4 MiB young generation cost the transfer ~20 % of its time).
 */
export const FERRY_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=8"];
