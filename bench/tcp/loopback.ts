// The loopback ceiling: how fast one client process can push bytes to another process over
// 127.0.0.1 with the runtime's sockets, measured in the same run as the broker's figures.

import net from "node:net";
import { sinkScript, startChild } from "./processes.ts";

const CHUNK_BYTES = 1024 * 1024;

export async function measureLoopbackMBps(totalBytes: number): Promise<number> {
  const sink = await startChild(sinkScript, []);
  try {
    const socket = net.connect(sink.port, "127.0.0.1");
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const done = new Promise<void>((resolve) => socket.once("data", () => resolve()));
    const header = Buffer.alloc(8);
    header.writeBigUInt64BE(BigInt(totalBytes));
    const chunk = new Uint8Array(CHUNK_BYTES).fill(7);
    const started = performance.now();
    socket.write(header);
    for (let sent = 0; sent < totalBytes; sent += CHUNK_BYTES) {
      const piece = sent + CHUNK_BYTES <= totalBytes ? chunk : chunk.subarray(0, totalBytes - sent);
      if (!socket.write(piece)) await new Promise((resolve) => socket.once("drain", resolve));
    }
    await done;
    const seconds = (performance.now() - started) / 1000;
    socket.destroy();
    return totalBytes / 1e6 / seconds;
  } finally {
    await sink.stop();
  }
}
