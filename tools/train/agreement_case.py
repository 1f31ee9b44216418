"""Writes the trainer side of the engine agreement test (tests/train/agreement_test.cc): a tiny
random model built with the trainer's code and tokenizer, exported to GGUF, and a case file with
what the trainer computes for it: token ids of corpus samples, two references' retrieval vectors
and kept positions, a prompt's query vector, and the prompt's logits with no memory, with both
references as dense memory and as sparse memory.

Usage: agreement_case.py OUT_DIR   (writes OUT_DIR/model.gguf and OUT_DIR/case.txt)
Exits 77 (ctest SKIP_RETURN_CODE) when torch is not installed.

Case file: one record a line, "key" then whitespace-separated values; texts are hex-encoded.
"""

import os
import sys

try:
    import torch
except ImportError:
    print("agreement_case: python3 torch is not installed (apt-get install python3-torch); skipping")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import gguf  # noqa: E402
import model as M  # noqa: E402
import tokenizer as T  # noqa: E402

KEPT_TOKENS = 4  # fewer than the references' tokens, so sparse selection matters


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(7)
    gen = data.Generator(seed=3)
    corpus = gen.corpus(1500)
    tok = T.Tokenizer(T.learn_merges(corpus, 400))
    # memory layers other than the default first half: the engine must take them from the GGUF
    cfg = M.Config(n_vocab=tok.vocab_size, n_layers=4, n_embd=64, n_heads=4, n_kv_heads=2, n_ff=128,
                   context_length=512, declared_memory_layers=(1, 3))
    model = M.MemoriaLM(cfg)
    model.reset_parameters(std=0.15)  # larger than training's init, so attention is far from uniform
    model.eval()
    gguf.export(model, tok, os.path.join(out_dir, "model.gguf"), f16=False, name="agreement")

    lines = ["model model.gguf", f"kept_tokens {KEPT_TOKENS}", f"first_position {M.REFERENCE_TOKENS}",
             "memory_layers " + " ".join(map(str, cfg.memory_layers))]
    for text in corpus[:64] + ["Mixed  spacing,\n\n numbers 1234567 and punctuation?! 'tis done.  "]:
        ids = tok.encode(text)
        lines.append(f"sample {text.encode().hex()} {len(ids)} " + " ".join(map(str, ids)))

    examples = [gen.example() for _ in range(2)]
    refs = [tok.encode(e.document) for e in examples]
    prompt = [tok.bos] + tok.encode(examples[0].prompt + examples[0].answer)
    with torch.no_grad():
        S = max(len(r) for r in refs) + 1
        tokens = torch.zeros(len(refs), S, dtype=torch.long)
        for i, r in enumerate(refs):
            tokens[i, :len(r) + 1] = torch.tensor([tok.bos] + r)
        n_rows = torch.tensor([len(r) + 1 for r in refs])
        enc = model.encode_references(tokens, n_rows)
        for i, (e, r) in enumerate(zip(examples, refs)):
            lines.append(f"reference {e.document.encode().hex()} {len(r)} " + " ".join(map(str, r)))
            lines.append(f"vector {i} " + " ".join(f"{x:.9g}" for x in enc.vectors[i].tolist()))
        sparse = M.select(enc, n_rows, KEPT_TOKENS)
        for l, (_, _, pos, valid) in sparse.items():
            for i in range(len(refs)):
                for g in range(cfg.n_kv_heads):
                    kept = pos[i, g][valid[i, g]].tolist()
                    lines.append(f"kept {l} {i} {g} {len(kept)} " + " ".join(map(str, kept)))

        q = torch.tensor([prompt])
        both = torch.tensor([[0, 1]])
        qv = model.query_vectors(q, torch.tensor([len(prompt)]))
        lines.append(f"prompt {len(prompt)} " + " ".join(map(str, prompt)))
        lines.append("query_vector " + " ".join(f"{x:.9g}" for x in qv[0].tolist()))
        at_zero = torch.arange(len(prompt))
        cases = {
            "none": model(q, at_zero)[0],
            "dense": model(q, at_zero + M.REFERENCE_TOKENS,
                           memory=M.gather_memory(M.select(enc, n_rows, dense=True), both))[0],
            "sparse": model(q, at_zero + M.REFERENCE_TOKENS, memory=M.gather_memory(sparse, both))[0],
        }
        for name, logits in cases.items():
            for row in logits[0].tolist():
                lines.append(f"logits {name} " + " ".join(f"{x:.9g}" for x in row))
    with open(os.path.join(out_dir, "case.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"agreement_case: wrote {out_dir}/model.gguf and case.txt (vocab {tok.vocab_size})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
