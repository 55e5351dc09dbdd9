/**
 * deploy/sim runs `coldfront sim` with flags the built simulator accepts: the Deployment's own
 * args, run from dist/ as the image runs them, with only the address and the load delay changed
 * for a test (127.0.0.1 on a free port, no 20 s wait).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useCleanups, waitFor } from "../helpers/app.js";
import { runCli } from "../helpers/cli.js";
import { Upstream } from "../helpers/upstream.js";
import { readObjects } from "./kustomize.js";
import { DEPLOY, type Deployment, find, ROOT } from "./manifests.js";

const cleanup = useCleanups();
const built = existsSync(join(ROOT, "dist/sim/command.js"));

describe.skipIf(!built)(
  `deploy/sim${built ? "" : " (skipped: dist/ has no simulator; run npm run build)"}`,
  () => {
    it("starts the simulator with the Deployment's args and serves the model the sim target routes", async () => {
      const deployment = find<Deployment>(
        readObjects(join(DEPLOY, "sim/deployment.yaml")),
        "Deployment",
        "vllm-sim",
      );
      const args = [...(deployment.spec.template.spec.containers[0]?.args ?? [])];
      const set = (flag: string, value: string) => {
        const i = args.indexOf(flag);
        expect(i, flag).toBeGreaterThan(0);
        args[i + 1] = value;
      };
      const port = await Upstream.reservePort();
      set("--host", "127.0.0.1");
      set("--port", String(port));
      set("--startup-delay", "0s");
      const model = args[args.indexOf("--model") + 1];

      const sim = runCli(args);
      cleanup(() => sim.kill());
      await waitFor(
        async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.ok === true,
        "the simulator's /health",
        15_000,
      );
      const models = (await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json()) as {
        data: { id: string }[];
      };
      expect(models.data.map((m) => m.id)).toEqual([model]);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`^vllm:num_requests_waiting\\{[^}]*model_name="${model}"`, "m"));
    });
  },
);
