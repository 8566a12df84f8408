# Ferry's functions and CLI in one image. NATS runs in its own container (docker-compose.yml).
#   docker build -t ferry .
#   docker run --rm ferry doctor --check node,qemu
# Volumes: /var/lib/ferry/backups (the backup store), /etc/ferry (ferry.json, certs/).
FROM node:24-bookworm-slim

# qemu-img / qemu-nbd build and serve the qcow2 layers; nbdkit and libnbd-bin (nbdinfo, nbdcopy)
# for inspection and the lab. ca-certificates for engines signed by a public CA.
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils nbdkit libnbd-bin ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ferry/app

# Dependencies first, so code changes do not reinstall them. --omit=dev drops typescript,
# vitest and @types; tsx stays because it is a runtime dependency (it runs the TypeScript).
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

COPY . .

# Run as an unprivileged user; the store is private to it (backups are 0600 / 0700).
RUN groupadd --system --gid 10001 ferry \
 && useradd --system --uid 10001 --gid ferry --home-dir /var/lib/ferry --shell /usr/sbin/nologin ferry \
 && mkdir -p /var/lib/ferry/backups /etc/ferry/certs \
 && chown -R ferry:ferry /var/lib/ferry /etc/ferry \
 && chmod 0700 /var/lib/ferry/backups

ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=8 \
    FERRY_CONFIG=/etc/ferry/ferry.json \
    BACKUP_DIR=/var/lib/ferry/backups

VOLUME ["/var/lib/ferry/backups", "/etc/ferry"]
USER ferry

# `docker run ferry <command>` runs `ferry <command>`; the default runs every function.
ENTRYPOINT ["node", "cli/ferry.mjs"]
CMD ["run", "all"]

# Healthy = NATS with JetStream answers and the store is writable (engines are not checked
# here: an engine outage is not a reason to restart Ferry).
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 \
  CMD ["node", "cli/ferry.mjs", "doctor", "--check", "nats,store"]
