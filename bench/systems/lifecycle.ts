/** What the child servers of bench/systems/ do once up and when the harness stops them. */
import type { Server } from "node:http";

/** One JSON line for the child's log; the harness itself waits for the port (bench/lib/procs.ts). */
export function announceListening(port: number): void {
  process.stdout.write(`${JSON.stringify({ event: "listening", port })}\n`);
}

/** SIGTERM and SIGINT close the server and every connection at once, then exit. */
export function exitOnSignals(server: Server): void {
  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
