// `sluice serve`'s storage settings: `--partition-sync auto|fdatasync|flush`
// (SLUICE_PARTITION_SYNC, storage.partitionSync) handed to the engine's group commit, shown in
// /metrics (sluice_group_sync_syncfs) and in the startup line; drop-behind, the tail cache,
// and the topic defaults (--segment-bytes, --retention-ms, --retention-bytes). A bad value is
// a usage error naming it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { tempDir } from "../helpers.ts";
import { serveUntilListening, sluice } from "./cli_run.ts";

/** `sluice serve` with `args` after a fresh data directory and port 0 exits 2 with `message`. */
async function refused(args: string[], message: RegExp): Promise<void> {
  using dir = tempDir();
  const run = await sluice(["serve", "--data", dir.path, "--port", "0", ...args]);
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, message);
}

/**
 * Runs `check` against a broker started with `args` (and `env`), given its output and, with
 * `--http-port 0` among the args, its /metrics text; then stops it and checks it exited cleanly.
 */
async function served(
  args: string[],
  check: (output: string, metrics: () => Promise<string>) => Promise<void> | void,
  env?: NodeJS.ProcessEnv,
): Promise<void> {
  using dir = tempDir();
  const broker = await serveUntilListening(
    ["--data", dir.path, "--port", "0", ...args],
    env === undefined ? {} : { env },
  );
  try {
    const metrics = async () => {
      const http = /http listening on [\d.]+:(\d+)/.exec(broker.stdout());
      assert.ok(http !== null, broker.stdout());
      return await (await fetch(`http://127.0.0.1:${http[1]}/metrics`)).text();
    };
    await check(broker.stdout() + broker.stderr(), metrics);
  } finally {
    // process.kill, not child.kill: Deno's child.kill reports the signal as the exit
    // reason even when the child handled it and exited with a code of its own.
    process.kill(broker.child.pid!, "SIGTERM");
    assert.equal(await broker.exited, 0);
  }
}

async function helpLists(flag: RegExp): Promise<void> {
  const help = await sluice(["serve", "--help"]);
  assert.equal(help.status, 0);
  assert.match(help.stdout, flag);
}

describe("sluice serve --partition-sync", () => {
  test("a value other than auto, fdatasync or flush is refused, naming it", async () => {
    await refused(
      ["--partition-sync", "fsync"],
      /--partition-sync: expected one of auto, fdatasync, flush, got "fsync"/,
    );
    using dir = tempDir();
    const env = await sluice(["serve", "--data", dir.path, "--port", "0"], "", {
      env: { SLUICE_PARTITION_SYNC: "syncfs" },
    });
    assert.equal(env.status, 2, env.stderr);
    assert.match(
      env.stderr,
      /SLUICE_PARTITION_SYNC: expected one of auto, fdatasync, flush, got "syncfs"/,
    );
  });

  test("fdatasync reaches the engine: rounds never use syncfs", async () => {
    await served(["--http-port", "0", "--partition-sync", "fdatasync"], async (output, metrics) => {
      assert.match(output, /partitionSync="?fdatasync \(flag\)/);
      assert.match(await metrics(), /^sluice_group_sync_syncfs 0$/m);
    });
  });

  test("flush is accepted and shown in the startup line", async () => {
    await served(["--partition-sync", "flush"], (output) => {
      assert.match(output, /partitionSync="?flush \(flag\)/);
    });
  });

  test("serve --help lists the flag", async () => {
    await helpLists(/--partition-sync <value> +auto: group-commit rounds may flush/);
  });
});

describe("sluice serve --drop-behind", () => {
  test("a value other than on, off or all is refused, naming it", async () => {
    await refused(["--drop-behind", "no"], /--drop-behind: expected one of on, off, all, got "no"/);
  });

  for (const value of ["off", "all"]) {
    test(`${value} is taken and shown in the startup line`, async () => {
      await served(["--drop-behind", value], (output) => {
        assert.match(output, new RegExp(`dropBehind="?${value} \\(flag\\)`));
      });
    });
  }
});

describe("sluice serve --tail-cache-mib", () => {
  test("a value under 1 is refused, naming it", async () => {
    await refused(
      ["--tail-cache-mib", "0"],
      /--tail-cache-mib: expected an integer 1 to 1048576, got "0"/,
    );
  });

  test("the budget reaches the engine: /metrics shows it", async () => {
    await served(["--http-port", "0", "--tail-cache-mib", "64"], async (output, metrics) => {
      assert.match(output, /tailCacheMib="?64 \(flag\)/);
      const text = await metrics();
      assert.match(text, /^sluice_tail_cache_max_bytes 67108864$/m);
      assert.match(text, /^sluice_tail_cache_bytes 0$/m);
    });
  });

  test("serve --help lists the flag", async () => {
    await helpLists(/--tail-cache-mib <value> +MiB of written log tails/);
  });
});

describe("sluice serve --drop-behind-keep-mib", () => {
  test("a negative value is refused, naming it", async () => {
    await refused(
      ["--drop-behind-keep-mib", "-1"],
      /--drop-behind-keep-mib: expected an integer 0 to 1048576, got "-1"/,
    );
  });

  test("the flag and SLUICE_DROP_BEHIND_KEEP_MIB are taken, the flag first", async () => {
    await served(
      ["--drop-behind-keep-mib", "8"],
      (output) => assert.match(output, /dropBehindKeepMib="?8 \(flag\)/),
      { SLUICE_DROP_BEHIND_KEEP_MIB: "16" },
    );
  });

  test("serve --help lists the flag", async () => {
    await helpLists(/--drop-behind-keep-mib <value> +MiB of each partition's latest/);
  });
});

describe("sluice serve --segment-bytes, --retention-ms, --retention-bytes", () => {
  test("a segment size out of range is refused, naming it", async () => {
    await refused(
      ["--segment-bytes", "12"],
      /--segment-bytes: expected an integer 1024 to 2147483647, got "12"/,
    );
    await refused(
      ["--retention-bytes", "-2"],
      /--retention-bytes: expected an integer -1 to 9007199254740991, got "-2"/,
    );
  });

  test("topics created without their own config take them; their own config wins", async () => {
    await served(
      ["--segment-bytes", "1048576", "--retention-ms", "3600000"],
      async (output) => {
        assert.match(output, /segmentBytes="?1048576 \(flag\)/);
        assert.match(output, /retentionBytes="?5000000 \(env\)/);
        const port = /sluice listening on [\d.]+:(\d+)/.exec(output)![1]!;
        const broker = ["--broker", `127.0.0.1:${port}`];
        assert.equal((await sluice(["topics", "create", "plain", ...broker])).status, 0);
        const own = ["topics", "create", "own", "--config", "retentionMs=60000", ...broker];
        assert.equal((await sluice(own)).status, 0);
        const plain = (await sluice(["topics", "describe", "plain", ...broker])).stdout;
        assert.match(plain, /^segmentBytes +1048576$/m);
        assert.match(plain, /^retentionMs +3600000$/m);
        assert.match(plain, /^retentionBytes +5000000$/m);
        const mine = (await sluice(["topics", "describe", "own", ...broker])).stdout;
        assert.match(mine, /^retentionMs +60000$/m);
        assert.match(mine, /^segmentBytes +1048576$/m);
      },
      { SLUICE_RETENTION_BYTES: "5000000" },
    );
  });

  test("serve --help lists the flags", async () => {
    await helpLists(/--segment-bytes <value> +Bytes a segment of a topic created without/);
    await helpLists(/--retention-ms <value> +Keep a sealed segment of a topic created/);
  });
});
