/**
 * The Node.js floor, checked by the CLI before anything else loads (DESIGN.md "Runtime").
 *
 * This module imports nothing: cli.ts evaluates it before undici or fastify are loaded, since on
 * an older Node those fail with errors that say nothing about the version (undici 8 on Node 20:
 * `TypeError: Cannot read properties of undefined (reading 'bind')`).
 */

/**
 * package.json `engines.node` (`>=24`), which a test keeps in step. The libraries alone would
 * start on 22.19 (undici 8's floor, the highest of the runtime dependencies), but Node 24 is the
 * runtime coldfront is built for, tested on and pinned to (the `node` devDependency).
 */
export const MIN_NODE_MAJOR = 24;

/**
 * Undefined when `version` (`process.versions.node`, e.g. `24.21.0`) is new enough; else the
 * message to print: the running version, what is needed, and how to run the pinned Node.
 *
 * @example
 * const problem = nodeVersionProblem(process.versions.node, process.execPath);
 * if (problem) { process.stderr.write(problem); process.exit(2); }
 */
export function nodeVersionProblem(version: string, execPath: string): string | undefined {
  const major = Number.parseInt(version, 10);
  if (major >= MIN_NODE_MAJOR) return undefined;
  return [
    `coldfront: needs Node.js ${MIN_NODE_MAJOR} or later; this is Node.js ${version} (${execPath}).`,
    `In a checkout, after \`npm ci\`, node_modules/.bin/node is Node ${MIN_NODE_MAJOR} (the \`node\` devDependency). Run coldfront with it:`,
    "  npm start                              the local demo",
    "  npx coldfront proxy --config FILE      any coldfront command",
    '  PATH="$PWD/node_modules/.bin:$PATH" node dist/cli.js proxy --config FILE',
    `Elsewhere, install Node.js ${MIN_NODE_MAJOR}: https://nodejs.org/en/download`,
    "",
  ].join("\n");
}
