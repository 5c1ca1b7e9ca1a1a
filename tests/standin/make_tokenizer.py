#!/usr/bin/env python3
"""Write a tiny, offline, word-level Hugging Face tokenizer for the SGLang CPU stand-in tests.

    python make_tokenizer.py OUT_DIR

Benchmark clients such as ``python -m sglang.bench_serving`` need a tokenizer
(``--tokenizer DIR``) to build prompts and count tokens. This writes one
without any download: a WordLevel tokenizer that splits on whitespace only,
whose vocabulary is the stand-in's own word list plus a few
sentences. One token is one word, which is exactly how the stand-in counts
tokens, so client-side and server-side token counts agree.

Needs the ``tokenizers`` and ``transformers`` packages (the benchmark's own
dependencies); the stand-in server itself does not use this file.
"""

import json
import os
import sys

SENTENCES = [
    "The SGLang CPU stand-in returns deterministic placeholder text and is not a model.",
    "It is used to test a deployment bundle for a large language model server.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A tokenizer splits text into tokens; this one uses whole words only.",
    "Health checks, metrics, streaming and authentication behave like the real server.",
    "The capital city of France is Paris, and the capital of Italy is Rome.",
]

SPECIAL_TOKENS = ["[UNK]", "[PAD]", "<s>", "</s>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def _standin_words():
    """The stand-in's placeholder words, read from its source without importing
    the ``sglang`` stub package (which would shadow a real SGLang install)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "sglang", "srt", "standin_text.py")
    try:
        spec = importlib.util.spec_from_file_location("_standin_text_words", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return list(module.WORDS)
    except Exception:  # pragma: no cover - the word list is a convenience only
        return []


def build_vocab():
    from tokenizers.pre_tokenizers import WhitespaceSplit

    pre = WhitespaceSplit()
    vocab = {}
    for tok in SPECIAL_TOKENS:
        vocab.setdefault(tok, len(vocab))
    words = _standin_words()
    for sentence in SENTENCES + [" ".join(words)]:
        for piece, _ in pre.pre_tokenize_str(sentence):
            for form in (piece, piece.lower()):
                vocab.setdefault(form, len(vocab))
    return vocab


def make_tokenizer(out_dir: str) -> str:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocab = build_vocab()
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=131072,
    )
    fast.chat_template = CHAT_TEMPLATE
    os.makedirs(out_dir, exist_ok=True)
    fast.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "STANDIN_README.txt"), "w", encoding="utf-8") as f:
        f.write(
            "Word-level test tokenizer written by tests/standin/make_tokenizer.py for the "
            "SGLang CPU stand-in. It belongs to no model.\n"
        )
    # Sanity check: it loads back through AutoTokenizer without network access.
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(out_dir)
    ids = loaded.encode("the quick brown fox", add_special_tokens=False)
    assert len(ids) == 4, ids
    return out_dir


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    out = make_tokenizer(argv[1])
    print(json.dumps({"tokenizer_dir": os.path.abspath(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
