/**
 * The committed metrics-api and external-push triggers, read by a real coldfront as KEDA would
 * ask: the metrics-api URL path and valueLocation, and the external-push metadata sent over gRPC
 * by KEDA's client, answer the held count (and keep the model active while requests are in flight).
 */
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startColdTarget, useCleanups, waitFor } from "../helpers/app.js";
import { KedaClient } from "../helpers/keda-client.js";
import { readObjects } from "./kustomize.js";
import { chat, sendRequests } from "./load.js";
import { DEPLOY, type ScaledObject, type Trigger } from "./manifests.js";

const cleanup = useCleanups();
const HELD = 3;

function triggers(file: string): Trigger[] {
  return readObjects(join(DEPLOY, "scaledobjects", file)).flatMap(
    (o) => (o as typeof o & ScaledObject).spec.triggers,
  );
}

/**
 * coldfront with the target "llama" of the committed triggers, cold, its KEDA scaler on; `HELD`
 * requests held. `warm()` then starts an upstream that answers none of them, so all are in flight.
 */
async function holding() {
  const open: ServerResponse[] = [];
  const cold = await startColdTarget(cleanup, {
    // Headers, then nothing: the request stays in flight until the test ends.
    handler: (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      open.push(res);
    },
    extra: { scaler: { listen: "127.0.0.1:0" } },
  });
  const load = sendRequests(`${cold.app.clientUrl}/v1/chat/completions`, HELD, chat("m"));
  cleanup(() => load.cancel());
  await waitFor(() => cold.gate().pending === HELD, `${HELD} requests held`);
  return {
    ...cold,
    async warm() {
      await cold.up.start();
      await waitFor(() => cold.gate().inFlight === HELD && cold.gate().pending === 0, "all in flight");
    },
  };
}

describe("metrics-api.yaml, asked of a real coldfront", () => {
  it("reads the held count at `pending`, and the in-flight count at `inFlight`", async () => {
    const list = triggers("metrics-api.yaml").filter((t) => t.type === "metrics-api");
    expect(list.map((t) => t.metadata.valueLocation)).toEqual(["pending", "inFlight"]);
    const { app, warm } = await holding();

    const read = async (t: Trigger): Promise<number> => {
      // The committed URL with coldfront's test address in place of the cluster's.
      const committed = new URL(t.metadata.url ?? "");
      const res = await fetch(`${app.adminUrl}${committed.pathname}${committed.search}`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      return body[t.metadata.valueLocation ?? ""] as number;
    };
    expect(await Promise.all(list.map(read))).toEqual([HELD, 0]);
    await warm();
    expect(await Promise.all(list.map(read))).toEqual([0, HELD]);
  });
});

describe("external-push.yaml, sent by KEDA's gRPC client to a real coldfront", () => {
  it("is active while requests are held or in flight, and reports the held count against its target size", async () => {
    const [trigger, ...more] = triggers("external-push.yaml");
    expect(more).toEqual([]);
    expect(trigger?.type).toBe("external-push");
    const metadata = trigger!.metadata;
    const { app, warm } = await holding();
    const keda = await KedaClient.connect(app.scalerAddress ?? "");
    cleanup(() => keda.close());

    expect(await keda.isActive(metadata)).toBe(true);
    const [spec] = await keda.getMetricSpec(metadata);
    expect(spec?.targetSizeFloat).toBe(Number(metadata.targetPendingRequests));
    const [value] = await keda.getMetrics(metadata, spec?.metricName ?? "");
    expect(value?.metricValueFloat).toBe(HELD);

    await warm();
    expect(await keda.isActive(metadata)).toBe(true);
    expect((await keda.getMetrics(metadata, spec?.metricName ?? ""))[0]?.metricValueFloat).toBe(0);
  });
});
