"""Deterministic, plausible model output: what the emulator says, one token-ish piece at a time.

The text is a pure function of (emulator seed, model, prompt, options.seed), so a test or
a replayed benchmark sees the same answer twice. A prompt that asks for code gets prose
around a fenced code block preceded by a ``File: path`` line, which is what the mesh's
workflows parse; anything else gets prose. Pieces are the unit of counting: one piece is
one "token" in eval_count and one streamed NDJSON line.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

# Mentions that make a prompt ask for code, and which language it wants.
_CODE_HINT = re.compile(
    r"\b(code|implement\w*|write|function|class|refactor\w*|bug|fix|script|program\w*|"
    r"test|tests|python|golang|rust|typescript|javascript|api|endpoint|module)\b|```",
    re.IGNORECASE,
)
_LANGUAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\brust\b|\.rs\b|\bcargo\b", re.IGNORECASE), "rust"),
    (re.compile(r"\bgo\b|\bgolang\b|\.go\b", re.IGNORECASE), "go"),
    (re.compile(r"\btypescript\b|\.tsx?\b", re.IGNORECASE), "typescript"),
    (re.compile(r"\bjavascript\b|\bnode\.?js\b|\.js\b", re.IGNORECASE), "javascript"),
)
_EXTENSIONS = {"python": "py", "rust": "rs", "go": "go", "typescript": "ts", "javascript": "js"}
_DIRECTORIES = {
    "python": ("app", "src", "service", "lib"),
    "rust": ("src",),
    "go": ("internal/server", "cmd/app", "pkg/store"),
    "typescript": ("src", "src/lib", "web/src"),
    "javascript": ("src", "lib", "web"),
}
_PATH_IN_PROMPT = re.compile(r"\b[\w\-]+(?:/[\w\-]+)*\.(?:py|rs|go|ts|js)\b")

_WORDS = (
    "the request handler cache layer model router queue worker node cluster service "
    "function module interface value result error state config endpoint client server "
    "latency throughput memory token stream batch schedule retry timeout response input "
    "output record index table field path test case loop branch check update keep read "
    "write return call pass build run load store send receive parse validate handle "
    "simple small clear safe fast stable correct explicit separate single each every "
    "first next then when because so that this which with without before after into"
).split()
_OPENERS = (
    "Here is",
    "Sure, here is",
    "Below is",
    "This is",
    "Let's look at",
    "To do this, consider",
)
_CLOSERS = (
    "This keeps the logic small and easy to test.",
    "You can extend it as the requirements grow.",
    "Let me know if you want tests for the edge cases.",
    "Each step handles one concern, which keeps errors local.",
)
# Prompt words that make poor identifiers in the invented code.
_NOT_NAMES = frozenset(
    "write implement code function please with that this from into python rust golang "
    "typescript javascript class script program test tests should could would make "
    "user assistant system".split()
)
_FALLBACK_NAMES = ("items", "request", "value", "config", "result", "record", "queue", "node")
# Splits text into token-ish pieces: a word with its leading space, a run of spaces, or one mark.
_PIECE = re.compile(r" ?[A-Za-z0-9_]+|[ \t]+|\n|[^A-Za-z0-9_\s]")


# A code block longer than this many pieces is cut; a long answer goes on in prose.
_MAX_CODE_PIECES = 600


@dataclass(frozen=True, slots=True)
class Output:
    """An answer of exactly ``count`` pieces, produced lazily so that a huge ``num_predict``
    costs nothing until streamed."""

    count: int
    # "length" when num_predict cut the answer, "stop" when the model "chose" to end.
    done_reason: str
    prompt: str
    rng_seed: int
    is_code: bool
    # A structured answer (Ollama's ``format``), already cut to ``count`` pieces.
    fixed: tuple[str, ...] | None = None
    # The first pieces that are reasoning (a thinking model), counted in ``count``.
    thinking: int = 0

    def pieces(self) -> Iterator[str]:
        """The pieces, the same on every call: ``thinking`` of reasoning, then the answer."""
        if self.fixed is not None:
            return iter(self.fixed)
        names = _names_from(self.prompt)
        reasoning = islice(_prose(random.Random(self.rng_seed ^ 0x7417), names), self.thinking)
        rng = random.Random(self.rng_seed)
        rest = self.count - self.thinking
        if self.is_code:
            return chain(reasoning, _code_answer(rng, self.prompt, names, rest))
        return chain(reasoning, islice(_prose(rng, names), rest))

    @property
    def text(self) -> str:
        return "".join(self.pieces())


def prompt_tokens(text: str) -> int:
    """Ollama counts real tokens; about four characters per token is close enough here."""
    return max(1, len(text) // 4)


def generate(
    *,
    seed: int,
    model: str,
    prompt: str,
    num_predict: int | None,
    options_seed: int | None,
    format: str | dict[str, Any] | None = None,
    thinking: int = 0,
    ignore_eos: bool = False,
) -> Output:
    """The answer of ``model`` to ``prompt``; same arguments, same answer.

    The model ends its answer after 40 to 400 pieces from a Pareto tail (most answers
    are short, a few run long, as with real models), or sooner where ``num_predict`` cuts
    it (done_reason "length"; Ollama's -1 and -2 mean "no limit"): ``num_predict`` is a
    cap, as in Ollama, so a client's large ``max_tokens`` does not make answers long.
    ``ignore_eos`` (llama.cpp's option, which tests and benchmarks use for answers of an
    exact length) makes the answer run to ``num_predict`` whatever its natural end. With
    a ``format`` ("json" or a JSON Schema object, as Ollama takes it) the answer is one
    JSON document (matching the schema), ending where the document does unless
    ``num_predict`` cuts it first. ``thinking``: pieces of
    reasoning before the answer (``num_predict`` counts them too, as Ollama's eval_count).
    """
    material = f"{seed}\x00{model}\x00{options_seed}\x00{prompt}\x00{format}".encode()
    rng_seed = int.from_bytes(hashlib.sha256(material).digest()[:8], "big")
    capped = num_predict is not None and num_predict >= 0
    if format:
        rng = random.Random(rng_seed)
        schema = format if isinstance(format, dict) else {}
        value = _json_value(rng, schema, _names_from(prompt), depth=0)
        if not isinstance(value, dict) and not schema:
            value = {"answer": value}
        doc = tuple(_tokenize(json.dumps(value)))
        if capped and num_predict is not None and num_predict < len(doc):
            return Output(num_predict, "length", prompt, rng_seed, False, doc[:num_predict])
        return Output(len(doc), "stop", prompt, rng_seed, False, doc)
    length_rng = random.Random(rng_seed ^ 0x5EED)
    natural = min(400, int(40 * length_rng.paretovariate(1.2))) + thinking
    if capped and num_predict is not None and (ignore_eos or num_predict < natural):
        count, reason = num_predict, "length"
        thinking = min(thinking, count)
    else:
        count, reason = natural, "stop"
    code = bool(_CODE_HINT.search(prompt))
    return Output(count, reason, prompt, rng_seed, code, thinking=thinking)


def _json_value(rng: random.Random, schema: dict[str, Any], names: list[str], depth: int) -> Any:
    """A value that a JSON Schema (the subset models are asked for) accepts; an empty
    schema gets a short sentence."""
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" and depth < 6:
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            props = {"answer": {"type": "string"}}
        return {
            str(k): _json_value(rng, v if isinstance(v, dict) else {}, names, depth + 1)
            for k, v in props.items()
        }
    if kind == "array" and depth < 6:
        items = schema.get("items")
        low = int(schema.get("minItems", 1) or 0)
        count = max(low, rng.randint(1, 3))
        return [
            _json_value(rng, items if isinstance(items, dict) else {}, names, depth + 1)
            for _ in range(count)
        ]
    if kind == "integer":
        return rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 100)))
    if kind == "number":
        bottom, top = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 100.0))
        return round(rng.uniform(bottom, top), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    words = [rng.choice(_WORDS if rng.random() < 0.8 else names) for _ in range(rng.randint(2, 8))]
    return " ".join(words)


def _code_answer(rng: random.Random, prompt: str, names: list[str], count: int) -> Iterator[str]:
    """Intro sentence, ``File:`` line, fenced block, then prose up to ``count`` pieces."""
    language = next((lang for pattern, lang in _LANGUAGES if pattern.search(prompt)), "python")
    path_match = _PATH_IN_PROMPT.search(prompt)
    path = path_match.group(0) if path_match else _invent_path(rng, language, names)
    intro = _tokenize(f"{rng.choice(_OPENERS)} an implementation of {rng.choice(names)}.")
    header = _tokenize(f"\n\nFile: {path}\n```{language}\n")
    footer = _tokenize("```\n\n")
    rest = count - len(intro) - len(header) - len(footer)
    if rest < 4:
        # Too short for a block; a real model cut off this early would not close one either.
        code = _tokenize(_code(rng, language, names, count))
        return islice(chain(intro, header, code), count)
    budget = min(rest - rest // 6, _MAX_CODE_PIECES)
    code = _tokenize(_code(rng, language, names, budget))[:budget]
    # Cut after the last whole definition (a blank line), else at a line end, so the block
    # reads as complete and the closing fence stays a fence; prose fills the rest.
    ends = [i + 1 for i in range(1, len(code)) if code[i] == code[i - 1] == "\n"]
    ends = ends or [i + 1 for i, p in enumerate(code) if p == "\n"]
    if ends:
        code = code[: ends[-1]]
    else:
        code[-1] = "\n"
    outro = chain(_tokenize(rng.choice(_CLOSERS)), _prose(rng, names, opening=False))
    return chain(intro, header, code, footer, islice(outro, rest - len(code)))


def _names_from(prompt: str) -> list[str]:
    words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z_]{3,15}", prompt)]
    names = [w for w in dict.fromkeys(words) if w not in _NOT_NAMES]
    return names[:12] or list(_FALLBACK_NAMES)


def _invent_path(rng: random.Random, language: str, names: list[str]) -> str:
    stem = {"go": "main", "rust": "lib"}.get(language) if rng.random() < 0.3 else None
    return (
        f"{rng.choice(_DIRECTORIES[language])}/{stem or rng.choice(names)}.{_EXTENSIONS[language]}"
    )


def _prose(rng: random.Random, names: list[str], *, opening: bool = True) -> Iterator[str]:
    """Endless sentences; callers take what they need. ``opening``: nothing precedes them."""
    first = opening
    while True:
        # Mostly common words, some taken from the prompt so the answer seems on topic.
        words = [
            rng.choice(_WORDS if rng.random() < 0.8 else names) for _ in range(rng.randint(6, 16))
        ]
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + "."
        yield from _tokenize(sentence if first else " " + sentence)
        first = rng.random() < 0.2
        if first:
            yield "\n\n"


def _code(rng: random.Random, language: str, names: list[str], count: int) -> str:
    """Enough lines of ``language``-shaped code for ``count`` pieces (callers trim)."""
    lines: list[str] = []
    while len(_tokenize("\n".join(lines))) < count + 8:
        name, arg, other = (rng.choice(names) for _ in range(3))
        limit = rng.randint(2, 64)
        if language == "rust":
            lines += [
                f"pub fn {name}_{other}({arg}: &[u32]) -> Option<u32> {{",
                f"    let total: u32 = {arg}.iter().sum();",
                f"    if total > {limit} {{ Some(total) }} else {{ None }}",
                "}",
                "",
            ]
        elif language == "go":
            title = name.capitalize() + other.capitalize()
            lines += [
                f"func {title}({arg} []int) (int, error) {{",
                f"\tif len({arg}) == 0 {{",
                f'\t\treturn 0, fmt.Errorf("{name}: empty {arg}")',
                "\t}",
                f"\treturn {arg}[0] + {limit}, nil",
                "}",
                "",
            ]
        elif language in ("typescript", "javascript"):
            typed = language == "typescript"
            lines += [
                f"export function {name}{other.capitalize()}({arg}{': number[]' if typed else ''})"
                f"{': number' if typed else ''} {{",
                f"  const total = {arg}.reduce((a, b) => a + b, 0);",
                f"  return total > {limit} ? total : {limit};",
                "}",
                "",
            ]
        else:
            lines += [
                f"def {name}_{other}({arg}: list[int]) -> int:",
                f'    """Return the {name} of {arg}, at least {limit}."""',
                f"    total = sum({arg})",
                f"    if total < {limit}:",
                f"        return {limit}",
                "    return total",
                "",
            ]
    return "\n".join(lines) + "\n"


def _tokenize(text: str) -> list[str]:
    return _PIECE.findall(text)


def embedding(*, model: str, text: str, size: int) -> list[float]:
    """``model``'s embedding of ``text``: ``size`` values, L2-normalised as Ollama's
    /api/embed returns them; the same text gives the same vector, different texts point
    in unrelated directions."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


# A user's word against tools ("without tools", "do not call any tools", "no tools"): a
# model told so answers in words, whatever it is offered, and whatever a later system
# message demands (as real models sometimes ignore the tools they are offered).
_NO_TOOLS = re.compile(
    r"\b(?:without|no|(?:do not|don't|never) (?:use|call))(?: any)? tools?\b", re.IGNORECASE
)


def declines_tools(said: str) -> bool:
    """Whether a user's ``said`` tells the model not to use tools."""
    return bool(_NO_TOOLS.search(said))


def tool_calls(tools: list[dict[str, Any]], request: str, seed: int) -> list[dict[str, Any]]:
    """The calls a model makes when offered ``tools`` (Ollama's ``tools[]`` entries), with
    arguments their parameters schema accepts: every tool the request names
    (``get_weather``; several named, several calls, in the order offered: parallel tool
    calls), else the first one a word of the request names (``weather``, a part of four
    letters or more), else none: the model answers in words, as a real one does to "Say
    hello" however many tools an agent offers with it."""
    functions = [t.get("function") or {} for t in tools]
    named = [f for f in functions if isinstance(f, dict) and f.get("name")]
    lowered = request.lower()
    said = set(re.findall(r"[a-z0-9]+", lowered))

    def mentioned(name: str) -> bool:
        parts = [p for p in re.split(r"[^a-z0-9]+", name.lower()) if len(p) >= 4]
        return any(p in said for p in parts)

    chosen = [f for f in named if str(f["name"]).lower() in lowered] or [
        f for f in named if mentioned(str(f["name"]))
    ][:1]
    return [_call(f, request, seed) for f in chosen]


def _call(function: dict[str, Any], request: str, seed: int) -> dict[str, Any]:
    material = f"{seed}\x00{function['name']}\x00{request}".encode()
    rng = random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
    params = function.get("parameters")
    schema = params if isinstance(params, dict) else {"type": "object", "properties": {}}
    arguments = _json_value(rng, {**schema, "type": "object"}, _names_from(request), depth=0)
    if not schema.get("properties"):
        arguments = {}
    return {"name": str(function["name"]), "arguments": arguments}


def call_pieces(*calls: dict[str, Any]) -> tuple[str, ...]:
    """The tokens a model writes for ``calls`` (what its decode time is made of)."""
    return tuple(p for call in calls for p in _tokenize(json.dumps(call)))


def logprob(piece: str, position: int, rng_seed: int, top: int) -> dict[str, Any]:
    """Ollama's ``logprobs`` entry for the answer's ``position``-th piece: the piece with a
    log probability that is the same on every call, and, with ``top`` > 0, that many most
    likely pieces at the position, most likely first. The chosen piece is the most likely
    one (as greedy decoding picks it); the probabilities of the listed pieces sum below 1.
    """
    rng = random.Random(rng_seed ^ (position * 0x9E3779B1))
    chosen = rng.uniform(0.35, 0.99)
    entry: dict[str, Any] = {
        "token": piece,
        "logprob": math.log(chosen),
        "bytes": list(piece.encode()),
    }
    if top > 0:
        alternatives = [w for w in rng.sample(_WORDS, min(len(_WORDS), top + 1)) if w != piece]
        lead = " " if piece.startswith(" ") else ""
        listed = [{k: entry[k] for k in ("token", "logprob", "bytes")}]
        left = 1.0 - chosen
        for word in alternatives[: top - 1]:
            left *= rng.uniform(0.3, 0.5)
            token = lead + word
            listed.append(
                {"token": token, "logprob": math.log(left), "bytes": list(token.encode())}
            )
        entry["top_logprobs"] = listed
    return entry
