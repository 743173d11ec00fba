#!/usr/bin/env python3
"""hf_check.py — hold the C llama runner against Hugging Face transformers on the same GGUF.

For each prompt (text tokenized by the GGUF's own tokenizer through transformers, or --ids):
  1. next-token logits: `subkv-generate --dump-logits` vs transformers' forward in float32,
     max |c - hf| / max |hf| must be <= --tol (default 1e-2);
  2. greedy generation of --gen tokens (default 32, never stopping at end-of-sequence) must give
     the same ids.
Prints one line per prompt and a summary; exits 1 when a check fails, 2 on bad set-up.

Needs: torch, transformers, gguf, numpy (a dev-only venv; see deploy/device-hf-check.sh for
the offline wheel list). Example:
    /work/venv-hf/bin/python tools/hf_check.py --model data/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import os
import subprocess
import sys
import tempfile

PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is the boiling point of water in Celsius?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Long-context language model decoding is limited by the memory traffic of the key-value "
    "cache: every generated token reads every past key and value of every attention head. "
    "Sketching methods keep a compressed summary of the cache whose size grows sublinearly "
    "with the context, and answer attention queries from it. In this note we compare exact "
    "attention with a sink-and-window cache, heavy-hitter eviction and a clustering sketch, "
    "measuring perplexity at equal memory on real text. The results show that",
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--model", default=os.path.join(root, "data/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--bin", default=os.path.join(root, "build/subkv-generate"))
    p.add_argument("--gen", type=int, default=32, help="greedy tokens compared (32)")
    p.add_argument("--tol", type=float, default=1e-2, help="max relative logit difference")
    p.add_argument("--ids", action="append", default=[],
                   help="a prompt as token ids '1,2,3' (repeatable; replaces the text prompts)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return p.parse_args()


def run_c(binary, model, ids, gen, dump):
    cmd = [binary, "--model", model, "--tokens", ",".join(map(str, ids)), "--max-tokens",
           str(gen), "--stop-at-eos", "0", "--quiet", "--dump-logits", dump]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (binary, r.returncode, r.stderr.strip()))
    toks, speed = None, ""
    for line in r.stdout.splitlines():
        if line.startswith("# tokens:"):
            toks = [int(t) for t in line.split(":", 1)[1].split(",") if t.strip()]
        elif line.startswith("# prompt"):
            speed = line[2:]
    return toks, speed


def hf_greedy(torch, model, ids, gen):
    """Next-token logits of the prompt and `gen` greedy ids, with the KV cache, no EOS stop."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        first = out.logits[0, -1].float().numpy().copy()
        past, nxt, made = out.past_key_values, int(out.logits[0, -1].argmax()), []
        for _ in range(gen):
            made.append(nxt)
            if len(made) == gen:
                break
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, int(out.logits[0, -1].argmax())
    return first, made


def main():
    a = parse_args()
    try:
        import numpy as np
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        print("hf_check: missing Python package: %s (pip install torch transformers gguf numpy)"
              % e, file=sys.stderr)
        return 2
    if not os.path.isfile(a.model):
        print("hf_check: no model at %s (make model)" % a.model, file=sys.stderr)
        return 2
    if not os.access(a.bin, os.X_OK):
        print("hf_check: no %s (make)" % a.bin, file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    if a.ids:
        prompts = [(s, [int(t) for t in s.split(",")]) for s in a.ids]
    else:
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        prompts = [(p, tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    worst, failed = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (text, ids) in enumerate(prompts):
            dump = os.path.join(tmp, "logits%d.f32" % i)
            c_toks, speed = run_c(a.bin, a.model, ids, a.gen, dump)
            c_logits = np.fromfile(dump, dtype=np.float32)
            hf_logits, hf_toks = hf_greedy(torch, model, ids, a.gen)
            if c_logits.shape != hf_logits.shape:
                print("prompt %d: logits shape %s vs HF %s" % (i, c_logits.shape,
                                                               hf_logits.shape))
                failed += 1
                continue
            diff = float(np.max(np.abs(c_logits - hf_logits)) / np.max(np.abs(hf_logits)))
            l2 = float(np.linalg.norm(c_logits - hf_logits) / np.linalg.norm(hf_logits))
            worst = max(worst, diff)
            same = c_toks == hf_toks
            first_diff = next((k for k, (x, y) in enumerate(zip(c_toks, hf_toks)) if x != y),
                              None)
            ok = diff <= a.tol and same
            failed += not ok
            print("prompt %d (%d tokens): max rel logit diff %.3e, l2 rel %.3e, argmax %d/%d, "
                  "greedy %d tokens %s%s  [%s]"
                  % (i, len(ids), diff, l2, int(np.argmax(c_logits)), int(np.argmax(hf_logits)),
                     a.gen, "match" if same else "DIFFER",
                     "" if same else " from token %s" % first_diff, "ok" if ok else "FAIL"))
            if not same:
                print("    C : %s\n    HF: %s" % (c_toks, hf_toks))
            print("    %s" % speed)
    print("hf_check: %d prompts, worst max relative logit difference %.3e (tol %.0e), %d failed"
          % (len(prompts), worst, a.tol, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
