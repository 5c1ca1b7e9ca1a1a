"""SGLang CPU STAND-IN: deterministic placeholder text (not a model).

A "token" here is one whitespace-separated word. The output is a function of
the prompt only: word i is picked from a fixed word list by a hash of
(prompt, i), so the first k words are the same whatever the length limit.
Prompts are counted the same way (whitespace words, or len(input_ids)).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, List, Optional, Sequence, Tuple

# Deliberately not natural language: nobody should mistake this for model output.
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima "
    "mike november oscar papa quebec romeo sierra tango uniform victor whiskey "
    "xray yankee zulu red orange yellow green blue indigo violet amber copper "
    "silver cobalt olive maroon teal one two three four five six seven eight "
    "nine ten eleven twelve north south east west standin placeholder cpu "
    "deterministic"
).split()

# Length of the "natural" answer when the request sets no token limit (a
# stand-in for the end-of-sequence token): 16..48 words, chosen by the prompt.
NATURAL_MIN = 16
NATURAL_SPAN = 33


def prompt_key(prompt: Any) -> bytes:
    """Canonical bytes of a prompt (str, list of token ids, chat messages...)."""
    if isinstance(prompt, str):
        return prompt.encode("utf-8")
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode("utf-8")


def word_ids(prompt: Any, n: int) -> List[int]:
    key = hashlib.sha256(prompt_key(prompt)).digest()
    out = []
    for i in range(max(0, n)):
        h = hashlib.blake2b(i.to_bytes(8, "little"), key=key, digest_size=4).digest()
        out.append(int.from_bytes(h, "little") % len(WORDS))
    return out


def natural_length(prompt: Any) -> int:
    h = hashlib.sha256(b"natural-length:" + prompt_key(prompt)).digest()
    return NATURAL_MIN + h[0] % NATURAL_SPAN


def count_prompt_tokens(prompt: Any) -> int:
    """Whitespace words of a text prompt; len() of a token-id list."""
    if prompt is None:
        return 0
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, (list, tuple)):
        if all(isinstance(x, int) for x in prompt):
            return len(prompt)
        return sum(count_prompt_tokens(x) for x in prompt)
    return 0


def chat_prompt_text(messages: Sequence[Any]) -> str:
    """The text of all message contents (text parts only), one message per line."""
    lines = []
    for m in messages or []:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif isinstance(part, str):
                    parts.append(part)
            content = " ".join(parts)
        if not isinstance(content, str):
            content = ""
        lines.append(f"{m.get('role', '')}: {content}")
    return "\n".join(lines)


class Generation:
    """The whole (deterministic) answer to one prompt, computed up front.

    steps[i] is the cumulative text after i+1 generated words, already cut at
    a matched stop string; finish is SGLang's finish_reason dict.
    """

    def __init__(self, prompt: Any, max_new_tokens: Optional[int], ignore_eos: bool,
                 stop: Optional[Sequence[str]] = None, default_max_new_tokens: Optional[int] = None):
        explicit = max_new_tokens is not None
        limit = max_new_tokens if explicit else default_max_new_tokens
        natural = natural_length(prompt)
        if explicit:
            n, finish = limit, {"type": "length", "length": limit}
        elif ignore_eos and limit is not None:
            n, finish = limit, {"type": "length", "length": limit}
        elif limit is not None and limit <= natural:
            n, finish = limit, {"type": "length", "length": limit}
        else:
            n, finish = natural, {"type": "stop", "matched": None}
        n = max(0, int(n))
        ids = word_ids(prompt, n)
        words = [WORDS[i] for i in ids]
        texts = []
        acc = ""
        for w in words:
            acc = w if not acc else acc + " " + w
            texts.append(acc)

        stops = [s for s in (stop or []) if isinstance(s, str) and s]
        if stops:
            for i, t in enumerate(texts):
                hits = [(t.find(s), s) for s in stops if s in t]
                if hits:
                    pos, matched = min(hits)
                    final = t[:pos]
                    texts = [x[: min(len(x), pos)] for x in texts[:i]] + [final]
                    ids = ids[: i + 1]
                    finish = {"type": "stop", "matched": matched}
                    break

        self.output_ids: List[int] = ids
        self.steps: List[str] = texts
        self.finish = finish

    @property
    def text(self) -> str:
        return self.steps[-1] if self.steps else ""

    @property
    def completion_tokens(self) -> int:
        return len(self.output_ids)

    def stream(self) -> List[Tuple[str, List[int]]]:
        """(cumulative_text, cumulative_ids) per generated word."""
        return [(self.steps[i], self.output_ids[: i + 1]) for i in range(len(self.steps))]
