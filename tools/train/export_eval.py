#!/usr/bin/env python3
"""Writes the held-out evaluation set that quality-bench and tests/server/quality_test.cc run
through the real server: JSON lines of {"document": {id, text}} for every evaluation entity and
{"question": {prompt, rag_prompt, answer, document_id}} for the first n of them (the rest are
distractors), exactly as train.py's evaluate() builds them. Evaluation entities never appear in
training (data.py's name pools).

    python3 tools/train/export_eval.py --out models/memoria-mini-eval.jsonl [--n 200] [--pool-extra 200]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n", type=int, default=200, help="questions")
    ap.add_argument("--pool-extra", type=int, default=200, help="distractor documents")
    args = ap.parse_args()
    gen = data.Generator(args.seed, split="eval")
    examples = [gen.example() for _ in range(args.n + args.pool_extra)]
    with open(args.out, "w") as f:
        for i, e in enumerate(examples):
            f.write(json.dumps({"document": {"id": f"eval-{i}", "text": e.document}}) + "\n")
        for i, e in enumerate(examples[:args.n]):
            f.write(json.dumps({"question": {
                "prompt": e.prompt,
                "rag_prompt": e.document + "\n" + e.prompt,
                "answer": e.answer.strip(),
                "document_id": f"eval-{i}",
            }}) + "\n")


if __name__ == "__main__":
    main()
