/**
 * An edge proxy in front of coldfront that cuts like an AWS ALB or Envoy's route timeout: if no
 * byte of the response (head or body) arrives for `idleMs`, the client gets a 504 with an HTML
 * body (what an ALB sends) and the request to coldfront is aborted.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";

export class EdgeProxy {
  readonly #server: Server;
  /** 504s this edge gave. */
  cuts = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  static async start(target: string, idleMs: number): Promise<EdgeProxy> {
    let edge: EdgeProxy | undefined;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const abort = new AbortController();
        let timer: NodeJS.Timeout;
        const arm = () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            abort.abort();
            if (edge) edge.cuts++;
            if (!res.headersSent) {
              res.writeHead(504, { "content-type": "text/html" });
              res.end("<html><body><h1>504 Gateway Time-out</h1></body></html>");
            } else res.destroy();
          }, idleMs);
        };
        arm();
        const headers = { ...req.headers };
        delete headers.host;
        delete headers.connection;
        request(`${target}${req.url}`, {
          method: req.method as "POST",
          headers,
          body: Buffer.concat(chunks),
          signal: abort.signal,
        }).then(
          async (up) => {
            arm();
            res.writeHead(up.statusCode, up.headers as Record<string, string>);
            try {
              for await (const chunk of up.body) {
                arm();
                res.write(chunk);
              }
              res.end();
            } catch {
              res.destroy();
            }
            clearTimeout(timer);
          },
          () => {
            // Aborted by the cut above, or coldfront unreachable.
            clearTimeout(timer);
            if (!res.headersSent) {
              res.writeHead(502);
              res.end();
            }
          },
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    edge = new EdgeProxy(server);
    return edge;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
