// `sluice serve --partition-sync auto|fdatasync|flush` (SLUICE_PARTITION_SYNC,
// storage.partitionSync): handed to the engine's group commit, shown in /metrics
// (sluice_group_sync_syncfs) and in the startup line; a bad value is a usage error naming it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { tempDir } from "../helpers.ts";
import { serveUntilListening, sluice } from "./cli_run.ts";

describe("sluice serve --partition-sync", () => {
  test("a value other than auto, fdatasync or flush is refused, naming it", async () => {
    using dir = tempDir();
    const flag = await sluice([
      "serve",
      "--data",
      dir.path,
      "--port",
      "0",
      "--partition-sync",
      "fsync",
    ]);
    assert.equal(flag.status, 2, flag.stderr);
    assert.match(
      flag.stderr,
      /--partition-sync: expected one of auto, fdatasync, flush, got "fsync"/,
    );
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
    using dir = tempDir();
    const served = await serveUntilListening([
      "--data",
      dir.path,
      "--port",
      "0",
      "--http-port",
      "0",
      "--partition-sync",
      "fdatasync",
    ]);
    try {
      const output = served.stdout() + served.stderr();
      assert.match(output, /partitionSync="?fdatasync \(flag\)/);
      const http = /http listening on [\d.]+:(\d+)/.exec(served.stdout());
      assert.ok(http !== null, served.stdout());
      const metrics = await (await fetch(`http://127.0.0.1:${http[1]}/metrics`)).text();
      assert.match(metrics, /^sluice_group_sync_syncfs 0$/m);
    } finally {
      // process.kill, not child.kill: Deno's child.kill reports the signal as the exit
      // reason even when the child handled it and exited with a code of its own.
      process.kill(served.child.pid!, "SIGTERM");
      assert.equal(await served.exited, 0);
    }
  });

  test("flush is accepted and shown in the startup line", async () => {
    using dir = tempDir();
    const served = await serveUntilListening([
      "--data",
      dir.path,
      "--port",
      "0",
      "--partition-sync",
      "flush",
    ]);
    try {
      assert.match(served.stdout() + served.stderr(), /partitionSync="?flush \(flag\)/);
    } finally {
      process.kill(served.child.pid!, "SIGTERM");
      assert.equal(await served.exited, 0);
    }
  });

  test("serve --help lists the flag", async () => {
    const help = await sluice(["serve", "--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--partition-sync <value> +auto: group-commit rounds may flush/);
  });
});

describe("sluice serve --drop-behind", () => {
  test("a value other than on, off or all is refused, naming it", async () => {
    using dir = tempDir();
    const flag = await sluice(["serve", "--data", dir.path, "--port", "0", "--drop-behind", "no"]);
    assert.equal(flag.status, 2, flag.stderr);
    assert.match(flag.stderr, /--drop-behind: expected one of on, off, all, got "no"/);
  });

  for (const value of ["off", "all"]) {
    test(`${value} is taken and shown in the startup line`, async () => {
      using dir = tempDir();
      const served = await serveUntilListening([
        "--data",
        dir.path,
        "--port",
        "0",
        "--drop-behind",
        value,
      ]);
      try {
        assert.match(
          served.stdout() + served.stderr(),
          new RegExp(`dropBehind="?${value} \\(flag\\)`),
        );
      } finally {
        process.kill(served.child.pid!, "SIGTERM");
        assert.equal(await served.exited, 0);
      }
    });
  }
});

describe("sluice serve --tail-cache-mib", () => {
  test("a value under 1 is refused, naming it", async () => {
    using dir = tempDir();
    const flag = await sluice([
      "serve",
      "--data",
      dir.path,
      "--port",
      "0",
      "--tail-cache-mib",
      "0",
    ]);
    assert.equal(flag.status, 2, flag.stderr);
    assert.match(flag.stderr, /--tail-cache-mib: expected an integer 1 to 1048576, got "0"/);
  });

  test("the budget reaches the engine: /metrics shows it", async () => {
    using dir = tempDir();
    const served = await serveUntilListening([
      "--data",
      dir.path,
      "--port",
      "0",
      "--http-port",
      "0",
      "--tail-cache-mib",
      "64",
    ]);
    try {
      assert.match(served.stdout() + served.stderr(), /tailCacheMib="?64 \(flag\)/);
      const http = /http listening on [\d.]+:(\d+)/.exec(served.stdout());
      assert.ok(http !== null, served.stdout());
      const metrics = await (await fetch(`http://127.0.0.1:${http[1]}/metrics`)).text();
      assert.match(metrics, /^sluice_tail_cache_max_bytes 67108864$/m);
      assert.match(metrics, /^sluice_tail_cache_bytes 0$/m);
    } finally {
      process.kill(served.child.pid!, "SIGTERM");
      assert.equal(await served.exited, 0);
    }
  });

  test("serve --help lists the flag", async () => {
    const help = await sluice(["serve", "--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--tail-cache-mib <value> +MiB of written log tails/);
  });
});

describe("sluice serve --drop-behind-keep-mib", () => {
  test("a negative value is refused, naming it", async () => {
    using dir = tempDir();
    const flag = await sluice([
      "serve",
      "--data",
      dir.path,
      "--port",
      "0",
      "--drop-behind-keep-mib",
      "-1",
    ]);
    assert.equal(flag.status, 2, flag.stderr);
    assert.match(flag.stderr, /--drop-behind-keep-mib: expected an integer 0 to 1048576, got "-1"/);
  });

  test("the flag and SLUICE_DROP_BEHIND_KEEP_MIB are taken, the flag first", async () => {
    using dir = tempDir();
    const served = await serveUntilListening(
      ["--data", dir.path, "--port", "0", "--drop-behind-keep-mib", "8"],
      { env: { SLUICE_DROP_BEHIND_KEEP_MIB: "16" } },
    );
    try {
      assert.match(served.stdout() + served.stderr(), /dropBehindKeepMib="?8 \(flag\)/);
    } finally {
      process.kill(served.child.pid!, "SIGTERM");
      assert.equal(await served.exited, 0);
    }
  });

  test("serve --help lists the flag", async () => {
    const help = await sluice(["serve", "--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /--drop-behind-keep-mib <value> +MiB of each partition's latest/);
  });
});
