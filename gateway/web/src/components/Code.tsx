import { highlight, segments } from "../highlight";

export function CodeBlock({ code, language }: { code: string; language: string | null }) {
  return (
    <pre className="code" data-language={language ?? "text"}>
      <code
        className={language ? `hljs language-${language}` : "hljs"}
        dangerouslySetInnerHTML={{ __html: highlight(code, language) }}
      />
    </pre>
  );
}

/** A model's output: prose as text, fenced code highlighted. */
export function Output({ text, language }: { text: string; language: string }) {
  if (!text) return <p className="muted">No output yet.</p>;
  return (
    <div className="output">
      {segments(text, language).map((s, i) =>
        s.kind === "code" ? (
          <CodeBlock key={i} code={s.code} language={s.language} />
        ) : (
          <p key={i} className="prose">
            {s.text.trim()}
          </p>
        ),
      )}
    </div>
  );
}
