// Syntax highlighting with highlight.js's core and only the languages workflows produce,
// so the bundle stays small. Output text is split into prose and fenced code blocks.
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import cpp from "highlight.js/lib/languages/cpp";
import dockerfile from "highlight.js/lib/languages/dockerfile";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import markdown from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import yaml from "highlight.js/lib/languages/yaml";

const LANGUAGES = { bash, cpp, dockerfile, go, java, javascript, json, markdown, python, rust, sql, typescript, yaml };
for (const [name, language] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, language);

const ALIASES: Record<string, string> = {
  py: "python",
  ts: "typescript",
  tsx: "typescript",
  js: "javascript",
  jsx: "javascript",
  mjs: "javascript",
  sh: "bash",
  shell: "bash",
  yml: "yaml",
  md: "markdown",
  rs: "rust",
  c: "cpp",
  h: "cpp",
  hpp: "cpp",
  cc: "cpp",
  "c++": "cpp",
};

/** The registered language for a fence tag, file extension or workflow language, or null. */
export function languageFor(name: string): string | null {
  const key = name.trim().toLowerCase();
  const resolved = ALIASES[key] ?? key;
  return hljs.getLanguage(resolved) ? resolved : null;
}

export function languageForPath(path: string): string | null {
  const base = path.split("/").pop() ?? "";
  if (base.toLowerCase() === "dockerfile") return "dockerfile";
  const dot = base.lastIndexOf(".");
  return dot >= 0 ? languageFor(base.slice(dot + 1)) : null;
}

/** highlight.js HTML for `code` (escaped; safe to inject), plain-escaped when no language fits. */
export function highlight(code: string, language: string | null): string {
  if (language) return hljs.highlight(code, { language, ignoreIllegals: true }).value;
  return code.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export type Segment = { kind: "text"; text: string } | { kind: "code"; code: string; language: string | null };

/** Split model output into prose and ``` fenced code blocks (an unclosed fence runs to the end). */
export function segments(output: string, fallbackLanguage = ""): Segment[] {
  const out: Segment[] = [];
  const fence = /```([^\n`]*)\n([\s\S]*?)(?:```|$)/g;
  let last = 0;
  for (let m = fence.exec(output); m !== null; m = fence.exec(output)) {
    if (m.index > last) out.push({ kind: "text", text: output.slice(last, m.index) });
    const tag = (m[1] ?? "").trim();
    out.push({
      kind: "code",
      code: (m[2] ?? "").replace(/\n$/, ""),
      language: languageFor(tag) ?? (tag ? null : languageFor(fallbackLanguage)),
    });
    last = fence.lastIndex;
    if (m[0].length === 0) break;
  }
  if (last < output.length) out.push({ kind: "text", text: output.slice(last) });
  return out.filter((s) => s.kind === "code" || s.text.trim() !== "");
}
