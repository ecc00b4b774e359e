// The dashboard's source hash: one SHA-256 over every file the build reads, so a check
// without Node (tests/test_dashboard.py) can tell whether the committed dist/ was built
// from the sources beside it. tests/test_dashboard.py computes the same hash in Python;
// change both together.
//
//   node scripts/source-hash.mjs                 print the hash
//   node scripts/source-hash.mjs --write FILE    write it to FILE (the build does)
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Inputs of the build: fixed files plus src/ without tests. */
export function buildInputs() {
  const files = [
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
  ];
  /** @param {string} dir */
  const walk = (dir) => {
    for (const name of readdirSync(join(root, dir))) {
      const path = `${dir}/${name}`;
      if (statSync(join(root, path)).isDirectory()) {
        if (name !== "test") walk(path);
      } else if (!/\.test\.[jt]sx?$/.test(name)) {
        files.push(path);
      }
    }
  };
  walk("src");
  return files.sort();
}

/** sha256 over "path\n" + sha256(content) + "\n" for each input, sorted by path. */
export function sourceHash() {
  const outer = createHash("sha256");
  for (const path of buildInputs()) {
    const inner = createHash("sha256").update(readFileSync(join(root, path))).digest("hex");
    outer.update(`${path}\n${inner}\n`);
  }
  return outer.digest("hex");
}

const args = process.argv.slice(2);
if (args[0] === "--write" && args[1]) {
  const out = join(root, args[1]);
  writeFileSync(out, `${sourceHash()}\n`);
  console.log(`source hash written to ${relative(root, out).split(sep).join("/")}`);
} else {
  console.log(sourceHash());
}
