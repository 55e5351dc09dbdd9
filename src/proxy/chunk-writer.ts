/**
 * Writes a chunked response body straight to the client's socket, framed here, once Node has
 * written the response head. Through `ServerResponse.write()` every chunk costs a cork, a
 * nextTick, four buffered stream writes and a writev; a paced SSE stream pays that for every
 * token (bench/README.md "What was tried": about a fifth of the relay's CPU per chunk). Here it
 * is one buffer and one socket write. `res.end()` still writes the last chunk and finishes the
 * response, so keep-alive and the server's bookkeeping are Node's own.
 */
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";

const CRLF = 0x0d0a;

/**
 * The socket to write `res`'s body chunks to, or undefined when the body must go through
 * `res.write()`: no chunked framing (HTTP/1.0 clients, a known length, HEAD), or no socket of its
 * own yet (a pipelined response waiting behind the one before it, whose bytes Node queues in
 * order). Flushes the head, so bytes written to the socket follow it.
 */
export function chunkSocket(res: ServerResponse): Socket | undefined {
  const socket = res.socket;
  if (!res.chunkedEncoding || socket === null || socket.destroyed || res.writableEnded) return undefined;
  res.flushHeaders();
  return socket;
}

/** One chunk, framed as RFC 9112 §7.1 says; returns the socket's backpressure signal. */
export function writeChunk(socket: Socket, data: Buffer): boolean {
  if (data.length === 0) return true;
  const size = data.length.toString(16);
  const frame = Buffer.allocUnsafe(size.length + 2 + data.length + 2);
  let at = frame.write(size, 0, "latin1");
  at = frame.writeUInt16BE(CRLF, at);
  at += data.copy(frame, at);
  frame.writeUInt16BE(CRLF, at);
  return socket.write(frame);
}
