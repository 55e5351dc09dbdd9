/**
 * Unknown fields in manifests. The model classes' validate() checks types, required fields and
 * enums, but lets any unknown field through, so `readinesProbe:` would pass it and then be
 * dropped (or refused) by the API server. The same packages' TypeScript types do know every
 * field: this type-checks each object as an object literal of its model's interface
 * (`IDeployment`, `IScaledObject`, ...), where TypeScript reports every property the type does
 * not declare.
 */

import { join } from "node:path";
import ts from "typescript";
import type { K8sObject } from "./kustomize.js";
import { modelModule, ROOT } from "./manifests.js";

export interface Located {
  readonly where: string;
  readonly object: K8sObject;
}

/** One problem per property the object's model type does not declare, naming the object. */
export function unknownFieldProblems(list: readonly Located[]): string[] {
  const checked = list.map((l) => ({ ...l, module: modelModule(l.object.apiVersion, l.object.kind) }));
  const lines: string[] = [];
  const owner: number[] = [];
  checked.forEach((c, i) => {
    lines.push(`import type { I${c.object.kind} as T${i} } from "${c.module}";`);
    owner.push(i);
  });
  checked.forEach((c, i) => {
    // One line per object, so a diagnostic's line says which object it is about.
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(c.object)};`);
    owner.push(i);
  });
  const source = lines.join("\n");
  // A file that does not exist, under the repository so that node_modules and "type": "module"
  // resolve as for the tests.
  const fileName = join(ROOT, "test/deploy/__manifests__.ts");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (f, lang, ...rest) =>
    f === fileName ? ts.createSourceFile(f, source, lang) : getSourceFile.call(host, f, lang, ...rest);
  host.fileExists = (f) => f === fileName || fileExists.call(host, f);
  host.readFile = (f) => (f === fileName ? source : readFile.call(host, f));
  const program = ts.createProgram([fileName], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    // JSON's quoted keys show as '"name"' in messages; say 'name'.
    const text =
      ts
        .flattenDiagnosticMessageText(d.messageText, "\n")
        .split("\n")[0]
        ?.replace(/'"([^"]+)"'/g, "'$1'") ?? "";
    if (d.file?.fileName !== fileName || d.start === undefined) return `(type check) ${text}`;
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    const c = checked[owner[line] ?? -1];
    return c ? `${c.where}: ${c.object.kind}/${c.object.metadata.name}: ${text}` : text;
  });
}
