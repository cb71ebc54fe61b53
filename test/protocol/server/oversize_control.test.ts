// A control request over its API's body limit, sent in pieces through the socket: the server
// drops its bytes as they arrive instead of assembling them (no assembly buffer is taken),
// answers INVALID_REQUEST naming the size and the limit once the last byte is in, and the
// connection stays in step: the next request on it is answered normally.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CONTROL_BODY_LIMITS, writeMsgpack } from "../../../protocol/codec/control.ts";
import { WIRE_ERRORS } from "../../../protocol/codec/errors.ts";
import { assemblyPoolSizeBytes } from "../../../protocol/codec/frame_reader.ts";
import { API } from "../../../protocol/codec/frames.ts";
import { connected, startTestServer } from "./serving.ts";

const BODY_BYTES = 24 * 1024 * 1024;
const PIECE_BYTES = 1024 * 1024;
const CORRELATION_ID = 900_000;

/** A DescribeGroup request frame whose body is `bodyBytes` of zeros. */
function oversizeFrame(bodyBytes: number): Uint8Array {
  const frame = new Uint8Array(4 + 8 + bodyBytes);
  const view = new DataView(frame.buffer);
  view.setUint32(0, 8 + bodyBytes);
  view.setUint16(4, API.DescribeGroup);
  view.setUint16(6, 1);
  view.setUint32(8, CORRELATION_ID);
  return frame;
}

describe("a control frame over its API's body limit", () => {
  test("is dropped as it arrives, refused once whole, and the connection goes on", async () => {
    await using t = await startTestServer();
    using client = await connected(t.port);
    const limit = CONTROL_BODY_LIMITS.DescribeGroup.bytesMax;
    assert.ok(BODY_BYTES > limit);
    const poolBefore = assemblyPoolSizeBytes();
    const frame = oversizeFrame(BODY_BYTES);
    for (let at = 0; at < frame.length; at += PIECE_BYTES) {
      client.send(frame.subarray(at, Math.min(frame.length, at + PIECE_BYTES)));
    }
    const after = client.request(API.Stats, (w) => writeMsgpack(w, {}));
    const refused = await client.response(CORRELATION_ID);
    assert.equal(refused.errorCode, WIRE_ERRORS.INVALID_REQUEST);
    const message = refused.reader.string("error_message");
    assert.match(message, new RegExp(`of ${BODY_BYTES} bytes exceeds ${limit} bytes`));
    assert.equal((await client.response(after)).errorCode, 0, "the next request is answered");
    assert.equal(
      assemblyPoolSizeBytes(),
      poolBefore,
      "no assembly buffer was taken for the dropped frame",
    );
    assert.ok(!client.closed, "the connection stays open");
  });
});
