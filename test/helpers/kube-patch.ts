/**
 * The patch types of the Kubernetes API (for the fake API server, test/helpers/fake-kube.ts), as
 * the API server applies them to an object's JSON: RFC 7386 JSON merge patch, RFC 6902 JSON
 * patch, and strategic merge patch for objects without lists (where it is a merge patch; its
 * `$` directives are refused rather than ignored). Errors carry the status and reason the API
 * server answers with: 400 for an undecodable patch, 422 for a JSON patch op that fails (a
 * `test` included), 415 for any other content type (no server-side apply here).
 */

export interface PatchError extends Error {
  code?: number;
  reason?: string;
}

function patchError(code: number, reason: string, message: string): PatchError {
  return Object.assign(new Error(message), { code, reason });
}

/** The patched Scale, by the patch type of `contentType`; throws a PatchError as the API server answers. */
export function applyScalePatch(
  scale: Record<string, unknown>,
  contentType: string,
  body: string,
): Record<string, unknown> {
  let patch: unknown;
  const types = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
  ];
  if (!types.includes(contentType)) {
    throw patchError(
      415,
      "UnsupportedMediaType",
      `the body of the request was in an unknown format - accepted media types include: ${types.join(", ")} (the fake does no server-side apply)`,
    );
  }
  try {
    patch = JSON.parse(body);
  } catch (err) {
    throw patchError(400, "BadRequest", `error decoding patch: ${(err as Error).message}`);
  }
  if (contentType === "application/json-patch+json") {
    if (!Array.isArray(patch))
      throw patchError(
        400,
        "BadRequest",
        "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
      );
    return jsonPatch(structuredClone(scale), patch);
  }
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) {
    throw patchError(400, "BadRequest", "error decoding patch: a merge patch is a JSON object");
  }
  if (contentType === "application/strategic-merge-patch+json" && JSON.stringify(patch).includes('"$')) {
    throw patchError(
      400,
      "BadRequest",
      "the fake implements no strategic-merge directives ($patch, $retainKeys, ...)",
    );
  }
  return mergePatch(scale, patch) as Record<string, unknown>;
}

/** RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> =
    typeof target === "object" && target !== null && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902 JSON patch over `doc` (mutated); a failed operation throws 422 as the API server does. */
export function jsonPatch(doc: Record<string, unknown>, ops: unknown[]): Record<string, unknown> {
  const fail = (message: string) => patchError(422, "Invalid", message);
  const walk = (pointer: string): { parent: Record<string, unknown> | unknown[]; key: string } => {
    if (!pointer.startsWith("/")) throw fail(`invalid JSON pointer ${JSON.stringify(pointer)}`);
    const parts = pointer
      .slice(1)
      .split("/")
      .map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));
    const key = parts.pop() as string;
    let parent: unknown = doc;
    for (const p of parts) {
      parent = (parent as Record<string, unknown> | undefined)?.[p];
      if (typeof parent !== "object" || parent === null) throw fail(`doc is missing path: ${pointer}`);
    }
    return { parent: parent as Record<string, unknown>, key };
  };
  const get = (pointer: string): unknown => {
    if (pointer === "") return doc;
    const { parent, key } = walk(pointer);
    if (!(key in parent)) throw fail(`doc is missing path: ${pointer}`);
    return (parent as Record<string, unknown>)[key];
  };
  const put = (pointer: string, value: unknown, replace: boolean) => {
    const { parent, key } = walk(pointer);
    if (Array.isArray(parent)) {
      const i = key === "-" ? parent.length : Number(key);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw fail(`invalid index in ${pointer}`);
      if (replace) parent[i] = value;
      else parent.splice(i, 0, value);
    } else {
      if (replace && !(key in parent)) throw fail(`doc is missing key: ${pointer}`);
      parent[key] = value;
    }
  };
  const remove = (pointer: string) => {
    const { parent, key } = walk(pointer);
    if (!(key in parent)) throw fail(`doc is missing path: ${pointer}`);
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
  };
  for (const raw of ops) {
    const op = raw as { op?: string; path?: string; from?: string; value?: unknown };
    const path = op.path ?? "";
    switch (op.op) {
      case "add":
        put(path, structuredClone(op.value), false);
        break;
      case "replace":
        put(path, structuredClone(op.value), true);
        break;
      case "remove":
        remove(path);
        break;
      case "move": {
        const v = get(op.from ?? "");
        remove(op.from ?? "");
        put(path, v, false);
        break;
      }
      case "copy":
        put(path, structuredClone(get(op.from ?? "")), false);
        break;
      case "test":
        if (JSON.stringify(get(path)) !== JSON.stringify(op.value))
          throw fail(`testing value ${path} failed: test failed`);
        break;
      default:
        throw patchError(400, "BadRequest", `Unexpected kind: ${String(op.op)}`);
    }
  }
  return doc;
}
