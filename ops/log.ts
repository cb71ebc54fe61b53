// Structured logs for the broker: one line per notable event, with a level, a message and
// fields. Text lines read `2026-12-03T10:00:00.000Z info  listening host=127.0.0.1 port=7450`;
// with format "json" each line is one JSON object: {time, level, msg, ...fields}. Everything
// goes to standard error, so standard output keeps only the lines others parse (`sluice
// listening on HOST:PORT`, INTERFACES.md).

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";
export type LogFields = Record<string, string | number | boolean | bigint | null | undefined>;

const RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LoggerOptions = {
  level?: LogLevel;
  format?: LogFormat;
  /** Where a finished line goes (default: standard error). */
  write?: (line: string) => void;
  /** The clock (default Date.now). */
  nowMs?: () => number;
};

/** A text field value: bare when it has no space, quote or equals sign, else JSON-quoted. */
function textValue(value: LogFields[string]): string {
  const text = typeof value === "string" ? value : String(value);
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}

export class Logger {
  readonly level: LogLevel;
  readonly format: LogFormat;
  readonly #write: (line: string) => void;
  readonly #nowMs: () => number;

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? "info";
    this.format = options.format ?? "text";
    this.#write = options.write ?? ((line) => process.stderr.write(`${line}\n`));
    this.#nowMs = options.nowMs ?? Date.now;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level];
  }

  log(level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return;
    const time = new Date(this.#nowMs()).toISOString();
    const present = Object.entries(fields).filter(([, value]) => value !== undefined);
    if (this.format === "json") {
      const object: Record<string, unknown> = { time, level, msg };
      for (const [key, value] of present) {
        object[key] = typeof value === "bigint" ? value.toString() : value;
      }
      this.#write(JSON.stringify(object));
      return;
    }
    const tail = present.map(([key, value]) => ` ${key}=${textValue(value)}`).join("");
    this.#write(`${time} ${level.padEnd(5)} ${msg}${tail}`);
  }

  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }
}
