# sluice broker image. Its steps are the same commands CI runs (`npm ci`, then `bun`), so a green
# `.ci/run` is what this image builds from. It is not built on the development machines, which
# have no Docker engine.
FROM oven/bun:1.4-debian

WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY mod.ts ./
COPY record ./record
COPY engine ./engine
COPY protocol ./protocol
COPY bin ./bin
COPY bench ./bench
COPY tsconfig.json ./

RUN groupadd --system sluice && useradd --system --gid sluice --home /app sluice \
    && mkdir -p /data && chown sluice:sluice /data
USER sluice
VOLUME ["/data"]
EXPOSE 9092

# Fewer young-generation collections (fewer event-loop pauses), freed memory kept for reuse
# (fewer page faults) and one GC marking thread (shorter pauses where the cores are few):
# ops/gc_tuning.ts, README.md "GC settings". Read only at start.
ENV BUN_JSC_percentCPUPerMBForEdenTimer=0.0000625 BUN_JSC_largeHeapSize=67108864 MIMALLOC_PURGE_DELAY=-1 BUN_JSC_numberOfGCMarkers=1

ENTRYPOINT ["bun", "bin/sluice.ts"]
CMD ["serve", "--data", "/data", "--host", "0.0.0.0", "--port", "9092"]
