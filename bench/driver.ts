// The one interface every benchmark driver implements, after the OpenMessaging Benchmark's
// driver API: create a topic, producers that send asynchronously, consumers that call back.
// The harness owns timing: it stamps each payload with a send time and measures end-to-end
// latency when the consumer's callback sees it, on the same clock, in the same process.

/** Settings a driver prints and saves with its results, so runs compare like for like. */
export type DriverSettings = Record<string, string | number | boolean>;

export interface BenchProducer {
  /** Resolves when the system acknowledged the message (publish latency ends here). */
  sendAsync(key: Uint8Array | null, payload: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface BenchConsumer {
  close(): Promise<void>;
}

/** Called once per message received; `payload` is valid only during the call. */
export type MessageCallback = (payload: Uint8Array) => void;

export interface Driver {
  readonly name: string;
  /** Connects (or starts what it needs); throws DriverUnavailableError when it cannot. */
  initialize(): Promise<void>;
  /** What the driver is configured to do, printed and saved with the results. */
  settings(): DriverSettings;
  /** The durability a published message has when sendAsync resolves, in one line. */
  durability(): string;
  createTopic(topic: string, partitions: number): Promise<void>;
  createProducer(topic: string): Promise<BenchProducer>;
  /**
   * A consumer in `subscription` (a consumer group / queue / durable) reading `topic`. It
   * resolves once the consumer will see every message sent from then on (the harness creates
   * every consumer before the first send); consumers of one subscription share its messages.
   */
  createConsumer(
    topic: string,
    subscription: string,
    onMessage: MessageCallback,
  ): Promise<BenchConsumer>;
  deleteTopic(topic: string): Promise<void>;
  /** Releases everything; called once, also when initialize() failed or never ran. */
  close(): Promise<void>;
}

/** What the harness hands a driver's factory. */
export type DriverConfig = {
  /** A fresh directory the driver may use (data, sockets); the harness removes it afterwards. */
  workDir: string;
  /**
   * Driver options from the command line (`--driver-options key=value,...`, and
   * `--sluice-url host:port` as `url` for the sluice driver). A driver names the keys it reads
   * in its settings() and rejects values it cannot use with a RangeError naming key and value.
   */
  options: Readonly<Record<string, string>>;
};

/**
 * Every driver module (`bench/drivers/<name>.ts`) exports `createDriver: DriverFactory`. The
 * factory only builds the object; `initialize()` connects, so a missing server surfaces there
 * as a DriverUnavailableError.
 */
export type DriverFactory = (config: DriverConfig) => Driver | Promise<Driver>;

/** The system behind a driver is not installed or not running: the driver is skipped. */
export class DriverUnavailableError extends Error {
  override name = "DriverUnavailableError";
  /** One line telling the user how to make it available. */
  readonly hint: string;

  constructor(message: string, hint: string) {
    super(message);
    this.hint = hint;
  }
}
