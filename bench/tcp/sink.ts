// A TCP sink for the loopback ceiling: accepts one connection, reads the 8-byte total the
// client will send, discards that many bytes, then answers one byte. Prints its port first.

import net from "node:net";

const server = net.createServer({ noDelay: true }, (socket) => {
  let expected = -1;
  let received = 0;
  let header = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    if (expected < 0) {
      header = Buffer.concat([header, chunk]);
      if (header.length < 8) return;
      expected = Number(header.readBigUInt64BE(0));
      received = header.length - 8;
    } else {
      received += chunk.length;
    }
    if (received >= expected) socket.end(Buffer.from([1]));
  });
  socket.on("error", () => {});
});
server.listen(0, "127.0.0.1", () => {
  console.log(`sink listening on 127.0.0.1:${(server.address() as net.AddressInfo).port}`);
});
process.on("SIGTERM", () => process.exit(0));
