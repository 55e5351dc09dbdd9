/**
 * A renderer for exactly the subset of kustomize that deploy/ uses, so that the tests can read and
 * patch the manifests without a process per render. The tests also render every overlay with the
 * real `kubectl kustomize` (test/deploy/k8s-tools.ts: the kubectl of a pinned devDependency) and
 * require the same objects, so this renderer cannot drift from kustomize unnoticed.
 *
 * The subset, in kustomize's own order within one kustomization:
 * - `resources`: YAML files (multi-document) inside the kustomization's folder, and folders
 *   holding a kustomization.yaml (rendered first, recursively). A file outside the folder is an
 *   error, as in kustomize (its load restrictor). Two objects with one kind/namespace/name: error.
 * - `patches`: strategic-merge patches given inline (`patch`) or by file (`path`), matched by
 *   the patch's own kind and name, or by `target: {kind, name}` (then the patch's name is
 *   ignored). Maps merge, scalars replace, `null` deletes. Lists and `$patch` directives are
 *   errors: kustomize merges lists by key for built-in kinds and replaces them for custom ones,
 *   and this renderer does neither.
 * - `namespace`: set on every object, and on the RoleBinding subjects that name a ServiceAccount
 *   of the same render (as kustomize does). Any other subject that names a namespace is an error.
 * - `images`: `{name, newName, newTag}` for the containers and initContainers of pod templates.
 *
 * Any other kustomization field is an error, so a manifest can't quietly rely on a feature this
 * file would ignore.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { parseAllDocuments } from "yaml";

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonMap = { [key: string]: Json };

const SUPPORTED = new Set(["apiVersion", "kind", "resources", "namespace", "patches", "images"]);

function isMap(v: unknown): v is JsonMap {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** kind/namespace/name: kustomize's identity of an object (the group is left out: no clashes here). */
export function objectId(o: K8sObject): string {
  return `${o.kind}/${o.metadata.namespace ?? "~"}/${o.metadata.name}`;
}

/** Every document of a YAML file, empty ones skipped; each must look like a Kubernetes object. */
export function readObjects(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const out: K8sObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (
      !isMap(value) ||
      typeof value.apiVersion !== "string" ||
      typeof value.kind !== "string" ||
      !isMap(value.metadata) ||
      typeof value.metadata.name !== "string"
    ) {
      throw new Error(`${file}: a document without apiVersion, kind and metadata.name`);
    }
    out.push(value as unknown as K8sObject);
  }
  return out;
}

function readKustomization(dir: string): JsonMap {
  const file = join(dir, "kustomization.yaml");
  if (!existsSync(file)) throw new Error(`${dir}: no kustomization.yaml`);
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const k: unknown = docs[0]?.toJS();
  if (docs.length !== 1 || !isMap(k)) throw new Error(`${file}: expected one mapping`);
  for (const key of Object.keys(k)) {
    if (!SUPPORTED.has(key))
      throw new Error(`${file}: kustomize field "${key}" is not in the supported subset`);
  }
  if (k.kind !== undefined && k.kind !== "Kustomization")
    throw new Error(`${file}: kind is not Kustomization`);
  return k;
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** Renders the kustomization in `dir` as kustomize would (for the subset above). */
export function renderKustomization(dir: string): K8sObject[] {
  const root = resolve(dir);
  const k = readKustomization(root);
  const where = join(root, "kustomization.yaml");

  const objects: K8sObject[] = [];
  const seen = new Set<string>();
  for (const entry of asList(k.resources, `${where}: resources`)) {
    if (typeof entry !== "string") throw new Error(`${where}: resources: expected paths`);
    const path = resolve(root, entry);
    let loaded: K8sObject[];
    if (existsSync(path) && statSync(path).isDirectory()) {
      loaded = renderKustomization(path);
    } else {
      if (!inside(root, path)) throw new Error(`${where}: ${entry} is not in or below ${root}`);
      loaded = readObjects(path);
    }
    for (const o of loaded) {
      const id = objectId(o);
      if (seen.has(id)) throw new Error(`${where}: ${id} is defined twice`);
      seen.add(id);
      objects.push(o);
    }
  }

  for (const [i, entry] of asList(k.patches, `${where}: patches`).entries()) {
    applyPatch(objects, entry, root, `${where}: patches[${i}]`);
  }

  if (k.namespace !== undefined) {
    if (typeof k.namespace !== "string") throw new Error(`${where}: namespace: expected a string`);
    setNamespaces(objects, k.namespace, where);
  }

  for (const [i, entry] of asList(k.images, `${where}: images`).entries()) {
    setImage(objects, entry, `${where}: images[${i}]`);
  }
  return objects;
}

function asList(v: Json | undefined, what: string): Json[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list`);
  return v;
}

function applyPatch(objects: K8sObject[], entry: Json, root: string, where: string): void {
  if (!isMap(entry)) throw new Error(`${where}: expected a mapping`);
  for (const key of Object.keys(entry)) {
    if (!["patch", "path", "target"].includes(key)) throw new Error(`${where}: "${key}" is not supported`);
  }
  let text: string;
  if (typeof entry.patch === "string") text = entry.patch;
  else if (typeof entry.path === "string") {
    const file = resolve(root, entry.path);
    if (!inside(root, file)) throw new Error(`${where}: ${entry.path} is not in or below ${root}`);
    text = readFileSync(file, "utf8");
  } else throw new Error(`${where}: needs patch or path`);
  const docs = parseAllDocuments(text);
  const patch: unknown = docs[0]?.toJS();
  if (docs.length !== 1 || !isMap(patch) || typeof patch.kind !== "string" || !isMap(patch.metadata)) {
    throw new Error(`${where}: a strategic-merge patch is one mapping with kind and metadata`);
  }

  let kind = patch.kind;
  let name = typeof patch.metadata.name === "string" ? patch.metadata.name : undefined;
  if (entry.target !== undefined) {
    const target = entry.target;
    if (!isMap(target)) throw new Error(`${where}: target: expected a mapping`);
    for (const key of Object.keys(target)) {
      if (!["kind", "name"].includes(key)) throw new Error(`${where}: target.${key} is not supported`);
    }
    if (typeof target.kind !== "string") throw new Error(`${where}: target.kind is required`);
    // kustomize reads target.name as a regular expression; plain names only here.
    if (
      target.name !== undefined &&
      (typeof target.name !== "string" || !/^[a-z0-9.-]+$/.test(target.name))
    ) {
      throw new Error(`${where}: target.name: plain names only`);
    }
    kind = target.kind;
    name = target.name as string | undefined;
  } else if (name === undefined) {
    throw new Error(`${where}: a patch without target needs metadata.name`);
  }

  // kustomize lays the patch over each match with the match's own identity.
  const body: JsonMap = { ...patch };
  delete body.apiVersion;
  delete body.kind;
  const meta: JsonMap = { ...(patch.metadata as JsonMap) };
  delete meta.name;
  delete meta.namespace;
  if (Object.keys(meta).length > 0) body.metadata = meta;
  else delete body.metadata;

  const matches = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  // Stricter than kustomize, which lets a target match nothing: a patch that patches nothing is a
  // mistake in deploy/.
  if (matches.length === 0) throw new Error(`${where}: no ${kind}${name ? `/${name}` : ""} to patch`);
  for (const o of matches) {
    const merged = merge(o as unknown as JsonMap, body, where);
    for (const key of Object.keys(o)) delete (o as Record<string, unknown>)[key];
    Object.assign(o, merged);
  }
}

/** Strategic merge for maps and scalars; see the file comment for what is refused. */
function merge(base: Json | undefined, patch: Json, where: string, path = ""): Json {
  if (Array.isArray(patch)) throw new Error(`${where}: ${path || "(root)"}: list patches are not supported`);
  if (!isMap(patch)) return patch;
  const out: JsonMap = isMap(base) ? { ...base } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith("$")) throw new Error(`${where}: ${path}${key}: patch directives are not supported`);
    if (value === null) delete out[key];
    else out[key] = merge(out[key], value, where, `${path}${key}.`);
  }
  return out;
}

function setNamespaces(objects: K8sObject[], namespace: string, where: string): void {
  // ServiceAccounts of this render, by name, with their namespace before the change.
  const accounts = new Map(
    ofKindIn(objects, "ServiceAccount").map((o) => [o.metadata.name, o.metadata.namespace]),
  );
  for (const o of objects) {
    if (["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"].includes(o.kind)) {
      throw new Error(`${where}: ${o.kind} is cluster-scoped; not supported with namespace`);
    }
    o.metadata = { ...o.metadata, namespace };
    if (o.kind !== "RoleBinding") continue;
    // kustomize moves a ServiceAccount subject along with the ServiceAccount it names, when that
    // ServiceAccount is part of the render; others are left alone unless they name a namespace,
    // which is beyond this subset.
    for (const s of (o.subjects as { kind?: string; name?: string; namespace?: string }[] | undefined) ??
      []) {
      const mine =
        s.kind === "ServiceAccount" &&
        accounts.has(s.name ?? "") &&
        accounts.get(s.name ?? "") === s.namespace;
      if (mine) s.namespace = namespace;
      else if (s.namespace !== undefined)
        throw new Error(`${where}: RoleBinding subjects with a namespace are not supported`);
    }
  }
}

function ofKindIn(objects: readonly K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}

/** "reg:5000/a/b:1.0" -> "reg:5000/a/b"; "a@sha256:..." -> "a". */
function imageName(image: string): string {
  const noDigest = image.split("@")[0] ?? image;
  const colon = noDigest.lastIndexOf(":");
  return colon > noDigest.lastIndexOf("/") ? noDigest.slice(0, colon) : noDigest;
}

function setImage(objects: K8sObject[], entry: Json, where: string): void {
  if (!isMap(entry) || typeof entry.name !== "string")
    throw new Error(`${where}: expected {name, newName, newTag}`);
  for (const key of Object.keys(entry)) {
    if (!["name", "newName", "newTag"].includes(key)) throw new Error(`${where}: "${key}" is not supported`);
  }
  const { name, newName, newTag } = entry;
  for (const o of objects) {
    const pod = ((o.spec as JsonMap | undefined)?.template as JsonMap | undefined)?.spec as
      | JsonMap
      | undefined;
    for (const list of [pod?.containers, pod?.initContainers]) {
      for (const c of Array.isArray(list) ? list : []) {
        if (!isMap(c) || typeof c.image !== "string" || imageName(c.image) !== name) continue;
        if (c.image.includes("@")) throw new Error(`${where}: images by digest are not supported`);
        const tag = typeof newTag === "string" ? newTag : c.image.slice(name.length + 1);
        c.image = `${typeof newName === "string" ? newName : name}${tag ? `:${tag}` : ""}`;
      }
    }
  }
}

/** `kubectl kustomize dir`, parsed; bounded to 60 s. */
export function kubectlKustomize(kubectl: string, dir: string): K8sObject[] {
  const res = spawnSync(kubectl, ["kustomize", dir], { encoding: "utf8", timeout: 60_000 });
  if (res.status !== 0)
    throw new Error(`kubectl kustomize ${dir} failed: ${res.error?.message ?? res.stderr}`);
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(res.stdout)) {
    const v: unknown = doc.toJS();
    if (v !== null && v !== undefined) out.push(v as K8sObject);
  }
  return out;
}
