import { highlight, languageFor, languageForPath, segments } from "./highlight";

describe("segments", () => {
  it("splits prose and fenced code, with the fence's language", () => {
    const out = segments("Intro.\n\n```python\nx = 1\n```\nAfter.\n```\nplain\n```", "go");
    expect(out).toEqual([
      { kind: "text", text: "Intro.\n\n" },
      { kind: "code", code: "x = 1", language: "python" },
      { kind: "text", text: "\nAfter.\n" },
      { kind: "code", code: "plain", language: "go" },
    ]);
  });

  it("runs an unclosed fence to the end", () => {
    expect(segments("```ts\nconst a = 1;")).toEqual([{ kind: "code", code: "const a = 1;", language: "typescript" }]);
  });
});

describe("languages", () => {
  it("resolves fence tags and file names", () => {
    expect(languageFor("py")).toBe("python");
    expect(languageFor("klingon")).toBeNull();
    expect(languageForPath("tests/test_api.py")).toBe("python");
    expect(languageForPath("deploy/Dockerfile")).toBe("dockerfile");
    expect(languageForPath("notes/README")).toBeNull();
  });

  it("escapes what it cannot highlight and marks up what it can", () => {
    expect(highlight("<b>&", null)).toBe("&#60;b&#62;&#38;");
    expect(highlight("def f(): pass", "python")).toContain('<span class="hljs-keyword">def</span>');
  });
});
