// sluice serve's settings: flag > environment > config file > default, config files refused
// with the key's path, and the logger's two formats.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { UsageError } from "../../bin/_args.ts";
import { describeSettings, resolveServeSettings } from "../../bin/serve_config.ts";
import type { Engine } from "../../engine/mod.ts";
import { Logger } from "../../ops/log.ts";
import { TopicWatch } from "../../ops/topic_watch.ts";
import { tempDir } from "../helpers.ts";

function writeConfig(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  fs.writeFileSync(path, text);
  return path;
}

describe("serve settings", () => {
  test("flag beats env beats file beats default", () => {
    using dir = tempDir();
    const file = writeConfig(
      dir.path,
      "sluice.toml",
      [
        "port = 7001",
        'host = "127.0.0.2"',
        "[http]",
        "port = 7002",
        'host = "127.0.0.3"',
        "[log]",
        'level = "warn"',
      ].join("\n"),
    );
    const env = { SLUICE_PORT: "7101", SLUICE_HTTP_PORT: "7102", XDG_DATA_HOME: dir.path };
    const { settings, sources } = resolveServeSettings({ config: file, port: "7201" }, env);
    assert.equal(settings.port, 7201);
    assert.equal(sources.port, "flag");
    assert.equal(settings.httpPort, 7102);
    assert.equal(sources.httpPort, "env");
    assert.equal(settings.host, "127.0.0.2");
    assert.equal(sources.host, "file");
    assert.equal(settings.httpHost, "127.0.0.3");
    assert.equal(settings.logLevel, "warn");
    assert.equal(settings.logFormat, "text");
    assert.equal(sources.logFormat, "default");
    assert.equal(settings.data, join(dir.path, "sluice"));
    assert.equal(describeSettings({ settings, sources }).port, "7201 (flag)");
  });

  test("defaults: port 7450, data under XDG_DATA_HOME or ~/.local/share, no HTTP", () => {
    const { settings } = resolveServeSettings({}, { XDG_DATA_HOME: "/srv/x" });
    assert.equal(settings.port, 7450);
    assert.equal(settings.data, "/srv/x/sluice");
    assert.equal(settings.httpPort, undefined);
    const home = resolveServeSettings({}, {}).settings.data;
    assert.match(home, /\.local\/share\/sluice$/);
  });

  test("SLUICE_CONFIG names the file; JSON files work", () => {
    using dir = tempDir();
    const file = writeConfig(dir.path, "s.json", JSON.stringify({ log: { format: "json" } }));
    const { settings, sources } = resolveServeSettings({}, { SLUICE_CONFIG: file });
    assert.equal(settings.logFormat, "json");
    assert.equal(sources.logFormat, "file");
  });

  test("an unknown key is refused with its path", () => {
    using dir = tempDir();
    const file = writeConfig(dir.path, "bad.toml", "[http]\nprot = 80\n");
    assert.throws(
      () => resolveServeSettings({ config: file }, {}),
      (error: Error) =>
        error instanceof UsageError && /unknown key 'http\.prot'/.test(error.message),
    );
  });

  test("a value of the wrong type is refused with its path and value", () => {
    using dir = tempDir();
    const file = writeConfig(dir.path, "bad.toml", '[http]\nport = "eighty"\n');
    assert.throws(
      () => resolveServeSettings({ config: file }, {}),
      (error: Error) =>
        error instanceof UsageError &&
        error.message.includes('http.port: expected an integer 0 to 65535, got "eighty"'),
    );
    assert.throws(
      () => resolveServeSettings({}, { SLUICE_LOG_LEVEL: "loud" }),
      /SLUICE_LOG_LEVEL: expected one of debug, info, warn, error, got "loud"/,
    );
    assert.throws(() => resolveServeSettings({ port: "70000" }, {}), /--port: expected an integer/);
  });

  test("a config file that does not parse names the file", () => {
    using dir = tempDir();
    const file = writeConfig(dir.path, "bad.toml", "port = = 1\n");
    assert.throws(() => resolveServeSettings({ config: file }, {}), /bad\.toml: not valid TOML/);
    assert.throws(
      () => resolveServeSettings({ config: join(dir.path, "missing.json") }, {}),
      /missing\.json: cannot read it/,
    );
  });
});

describe("logger", () => {
  test("text lines carry level, message and fields; JSON lines are objects", () => {
    const lines: string[] = [];
    const nowMs = () => Date.UTC(2026, 0, 2, 3, 4, 5);
    const text = new Logger({ level: "info", write: (line) => lines.push(line), nowMs });
    text.debug("hidden");
    text.info("listening", { host: "127.0.0.1", port: 7450, note: "two words" });
    assert.deepEqual(lines, [
      '2026-01-02T03:04:05.000Z info  listening host=127.0.0.1 port=7450 note="two words"',
    ]);
    const json = new Logger({ format: "json", write: (line) => lines.push(line), nowMs });
    json.warn("recovery", { detail: "torn tail", bytes: 12n });
    assert.deepEqual(JSON.parse(lines[1]!), {
      time: "2026-01-02T03:04:05.000Z",
      level: "warn",
      msg: "recovery",
      detail: "torn tail",
      bytes: "12",
    });
  });
});

describe("topic watch", () => {
  test("logs topics created and deleted between two checks", () => {
    let topics = [{ name: "a", partitions: 1 }];
    // Only listTopics is read: a stand-in engine with a list the test changes.
    const engine = { listTopics: () => topics } as unknown as Engine;
    const lines: string[] = [];
    const log = new Logger({ format: "json", write: (line) => lines.push(line) });
    const watch = new TopicWatch(engine, log);
    watch.check();
    assert.deepEqual(lines, []);
    topics = [{ name: "b", partitions: 4 }];
    watch.check();
    const events = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(
      events.map(({ msg, topic, partitions }) => ({ msg, topic, partitions })),
      [
        { msg: "topic created", topic: "b", partitions: 4 },
        { msg: "topic deleted", topic: "a", partitions: undefined },
      ],
    );
  });
});
