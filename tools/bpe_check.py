#!/usr/bin/env python3
"""bpe_check.py — the independent reference for tools/bpe.c: Hugging Face `tokenizers` ids for
SmolLM2's vocabulary. Dev-only (CI never runs it); needs `pip install gguf tokenizers` in a venv
outside the repo.

The reference tokenizer is Hugging Face's own BPE implementation. Its vocabulary and merges come
from one of:
  --tokenizer-json PATH  the model's tokenizer.json from the Hub
                         (HuggingFaceTB/SmolLM2-135M-Instruct), used as is; or
  --gguf PATH            (default data/SmolLM2-135M-Instruct.Q4_1.gguf) the GGUF's tokenizer.ggml.*
                         arrays, assembled into the pipeline SmolLM2's tokenizer.json declares:
                         no normalizer; pre-tokenizer Sequence[Digits(individual_digits=true),
                         ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true)];
                         model BPE without unk token, byte fallback or ignore_merges; ByteLevel
                         decoder; the control tokens (token_type 3) as special added tokens.
transformers' own GGUF loader is not used: it builds a plain GPT-2 pre-tokenizer for
tokenizer.ggml.pre = "smollm" (no per-digit split), which is not what the model was trained with.

Commands
  ids FILE...  --out DIR   write DIR/NAME.txt (a copy of FILE) and DIR/NAME.ids (little-endian
                           int32 ids) per file; then `SUBKV_BPE_REF=DIR build/tests/test_bpe_model`
                           compares tools/bpe.c with them and prints tokens and mismatches.
  emit-c       --out FILE  write the C header of reference cases (tests/bpe_hf_ref.h) from the
                           strings in CASES below.
  random --seed S --chars N --out FILE
                           write N random characters of UTF-8 (words of many scripts, digits,
                           odd spaces, marks, emoji, any scalar value now and then) as a
                           hard input for the comparison.
  show TEXT                print the ids and pieces of one string.
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys

DEFAULT_GGUF = "data/SmolLM2-135M-Instruct.Q4_1.gguf"

# Strings whose ids tests/test_bpe_model.c checks against this reference (emit-c). They
# exercise each alternative of the pre-tokenizer regex, the per-digit split, whitespace runs
# before words and at the end, contractions, non-Latin scripts, emoji, control characters, bytes
# the vocabulary lacks, U+0085 and the special tokens.
CASES = [
    "Hello world",
    "Hello, world! How are you?",
    " leading space and trailing space ",
    "tabs\tand\nnewlines\n\n  indented\n",
    "    four spaces then code()",
    "numbers 1234567 and 3.14159, year 2024",
    "x=12+34*(56-7)/8",
    "don't won't it's we've they're I'm she'll he'd",
    "DON'T IT'S",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd",
    "emoji \U0001f600\U0001f680 and \u2764\ufe0f",
    "full-width \uff11\uff12\uff13 and superscript x\u00b2 \u00bd \u0663\u0664",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<empty_output>",
    "<|im_start <|im_end|x <|im_end|>",
    "def f(x):\n    return x ** 2  # square\n",
    "https://example.com/path?q=1&r=two#frag",
    "   \n\n\t  ",
    "a\u00a0b\u2003c\u2028d\u3000e",
    "ctrl \x01\x02\x07 bell",
    "bytes without a token are dropped: a\x04b !\x06! \x1d\x1d",
    "next line\u0085marks!\u0085 \u0085\u0085x",
    "mixed\u00e9\u0301 combining \u0065\u0301",
    "",
]


def read_gguf_vocab(path):
    from gguf import GGUFReader

    r = GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    merges = strings("tokenizer.ggml.merges")
    f = r.fields["tokenizer.ggml.pre"]
    pre = bytes(f.parts[f.data[0]]).decode()
    return tokens, types, merges, pre


def build_tokenizer(args):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if args.tokenizer_json:
        return Tokenizer.from_file(args.tokenizer_json)
    tokens, types, merges, pre = read_gguf_vocab(args.gguf)
    if pre != "smollm":
        sys.exit(f"bpe_check: {args.gguf}: tokenizer.ggml.pre is {pre!r}; this knows 'smollm'")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = []
    for m in merges:
        a, b = m.split(" ", 1)
        pairs.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    specials = [
        AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3
    ]
    tok.add_special_tokens(specials)
    return tok


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def c_string(s):
    """A C string literal of s's UTF-8 bytes (octal escapes outside printable ASCII)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F and c != "?":
            out.append(c)
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def cmd_emit_c(tok, args):
    lines = [
        "/*",
        " * bpe_hf_ref.h - reference ids from Hugging Face `tokenizers` for tests/test_bpe_model.c.",
        " * Generated by: python3 tools/bpe_check.py emit-c --out tests/bpe_hf_ref.h",
        " * (SmolLM2-135M-Instruct's vocabulary, special tokens parsed). Do not edit by hand.",
        " */",
        "#ifndef SUBKV_BPE_HF_REF_H",
        "#define SUBKV_BPE_HF_REF_H",
        "",
        "#include <stdint.h>",
        "",
        "typedef struct bpe_hf_case {",
        "    const char *text;",
        "    int n_ids;",
        "    const int32_t *ids;",
        "} bpe_hf_case;",
        "",
    ]
    for i, s in enumerate(CASES):
        ids = encode(tok, s)
        body = ", ".join(str(x) for x in ids) if ids else "0"
        lines.append(f"static const int32_t bpe_hf_ids_{i}[] = {{{body}}};")
    lines.append("")
    lines.append("static const bpe_hf_case bpe_hf_cases[] = {")
    for i, s in enumerate(CASES):
        lines.append(f"    {{{c_string(s)}, {len(encode(tok, s))}, bpe_hf_ids_{i}}},")
    lines.append("};")
    lines.append("")
    lines.append("#endif /* SUBKV_BPE_HF_REF_H */")
    with open(args.out, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
    if shutil.which("clang-format"):  # so that `make format-check` accepts the file as written
        style = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".clang-format")
        subprocess.run(["clang-format", "-i", "--style=file:" + style, args.out], check=True)
    print(f"wrote {len(CASES)} cases to {args.out}")


def cmd_ids(tok, args):
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        # HF tokenizes str: the text must be UTF-8 (Debian's licences and man pages are).
        text = data.decode("utf-8")
        ids = encode(tok, text)
        if tok.decode(ids, skip_special_tokens=False) != text:
            print(f"bpe_check: warning: HF does not round-trip {path}", file=sys.stderr)
        name = os.path.basename(path)
        with open(os.path.join(args.out, name + ".txt"), "wb") as f:
            f.write(data)
        with open(os.path.join(args.out, name + ".ids"), "wb") as f:
            f.write(struct.pack("<%di" % len(ids), *ids))
        total += len(ids)
        print(f"{name}: {len(data)} bytes, {len(ids)} tokens")
    print(f"total {total} tokens in {len(args.files)} files -> {args.out}")


def random_text(seed, n_chars):
    import random

    rnd = random.Random(seed)
    ranges = [
        (0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x20, 0x20), (0x21, 0x2F), (0x27, 0x27),
        (0xA0, 0xFF), (0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
        (0x300, 0x36F), (0x660, 0x669), (0x1F300, 0x1FAFF), (0x85, 0x85), (0x2000, 0x200B),
        (0x2028, 0x2029), (0x3000, 0x3000), (0x09, 0x0D), (0x01, 0x1F), (0x0, 0x10FFFF),
        (0x900, 0x97F), (0xE00, 0xE7F), (0x16A0, 0x16F8), (0xFF10, 0xFF5A), (0x2160, 0x2188),
    ]
    out = []
    while len(out) < n_chars:
        lo, hi = rnd.choice(ranges)
        k = rnd.randint(1, 8)  # runs of one range, like words
        for _ in range(k):
            cp = rnd.randint(lo, hi)
            if 0xD800 <= cp <= 0xDFFF:
                continue
            out.append(chr(cp))
    return "".join(out[:n_chars])


def cmd_random(tok, args):
    del tok
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        f.write(random_text(args.seed, args.chars))
    print(f"wrote {args.chars} random characters to {args.out}")


def cmd_show(tok, args):
    enc = tok.encode(args.text, add_special_tokens=False)
    for i, t in zip(enc.ids, enc.tokens):
        print(i, repr(t))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--tokenizer-json", default=None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ids")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", required=True)
    p = sub.add_parser("emit-c")
    p.add_argument("--out", default="tests/bpe_hf_ref.h")
    p = sub.add_parser("random")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--chars", type=int, default=100000)
    p.add_argument("--out", required=True)
    p = sub.add_parser("show")
    p.add_argument("text")
    args = ap.parse_args()
    if args.cmd == "random":
        return cmd_random(None, args)
    tok = build_tokenizer(args)
    {"ids": cmd_ids, "emit-c": cmd_emit_c, "show": cmd_show}[args.cmd](tok, args)


if __name__ == "__main__":
    main()
