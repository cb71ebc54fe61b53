// Handshake v1 (api_key 0), PROTOCOL.md section 4:
//
//   HandshakeRequest  = client_name:string client_version:string
//   HandshakeResponse = server_version:string frame_bytes_max:u32 in_flight_max:u16
//                       apis:[api_key:u16 min_version:u16 max_version:u16]

import type { Reader, Writer } from "./wire.ts";

export type HandshakeRequest = { clientName: string; clientVersion: string };

export type HandshakeResponse = {
  serverVersion: string;
  frameBytesMax: number;
  inFlightMax: number;
  apis: { apiKey: number; min: number; max: number }[];
};

export function writeHandshakeRequest(writer: Writer, request: HandshakeRequest): void {
  writer.string(request.clientName).string(request.clientVersion);
}

export function readHandshakeRequest(reader: Reader): HandshakeRequest {
  const clientName = reader.string("client_name");
  const clientVersion = reader.string("client_version");
  reader.expectEnd("HandshakeRequest");
  return { clientName, clientVersion };
}

export function writeHandshakeResponse(writer: Writer, response: HandshakeResponse): void {
  writer.string(response.serverVersion).u32(response.frameBytesMax).u16(response.inFlightMax);
  writer.u16(response.apis.length);
  for (const api of response.apis) writer.u16(api.apiKey).u16(api.min).u16(api.max);
}

export function readHandshakeResponse(reader: Reader): HandshakeResponse {
  const serverVersion = reader.string("server_version");
  const frameBytesMax = reader.u32("frame_bytes_max");
  const inFlightMax = reader.u16("in_flight_max");
  const count = reader.count("apis", 6);
  const apis: HandshakeResponse["apis"] = [];
  for (let i = 0; i < count; i++) {
    apis.push({ apiKey: reader.u16("api_key"), min: reader.u16("min"), max: reader.u16("max") });
  }
  reader.expectEnd("HandshakeResponse");
  return { serverVersion, frameBytesMax, inFlightMax, apis };
}
