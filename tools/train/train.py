"""Trains memoria-mini: a small Llama-shape model that answers questions from explicit memories
(../shared/MEMORY.md), and exports it to GGUF. One seeded command:

  python3 tools/train/train.py --out models/memoria-mini.gguf --minutes 6

Each step takes a batch of fictional entities (tools/train/data.py): every document is encoded as a
reference ([BOS] + tokens, positions 0..n) in one pass that also gives the language-modelling loss
on the document, the memory layers' K/V and attention mass, and the retrieval vectors. The losses:
- context: the question answered with the document (and two distractors) in the context;
- memory: the question at position R = 128 with 5 references as memory (its own and 4 distractors
  of the same kind), dense, then sparse (k = 8 by per-query mass) as the curriculum advances;
- retrieval: InfoNCE between the question's retrieval vector and the documents' vectors, so the
  server's top-5 retrieval finds the document;
- lm: next-token loss on the documents.
Curriculum (by progress, steps or time): context only -> + dense memory -> + sparse memory.
At the end it measures held-out recall (entities whose names never appear in training) with no
memory, with the document in context, and with retrieved dense / sparse memories.
"""

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import gguf  # noqa: E402
import model as M  # noqa: E402
import tokenizer as T  # noqa: E402

N_MEMORY_REFS = 5  # the server retrieves the top 5 references


def build_tokenizer(seed, n_merges):
    return T.Tokenizer(T.learn_merges(data.Generator(seed).corpus(20000), n_merges))


def load_gguf(path):
    """The tokenizer, config and model of a GGUF file written by gguf.export (to continue training)."""
    meta, tensors = gguf.read(path)
    tok = T.Tokenizer([m.split(" ") for m in meta["tokenizer.ggml.merges"]])
    cfg = M.Config(n_vocab=tok.vocab_size, n_layers=meta["llama.block_count"],
                   n_embd=meta["llama.embedding_length"], n_heads=meta["llama.attention.head_count"],
                   n_kv_heads=meta["llama.attention.head_count_kv"], n_ff=meta["llama.feed_forward_length"],
                   context_length=meta["llama.context_length"], rope_freq_base=meta["llama.rope.freq_base"],
                   rms_eps=meta["llama.attention.layer_norm_rms_epsilon"],
                   tied_embeddings="output.weight" not in tensors)
    model = M.MemoriaLM(cfg)
    names = {"token_embd.weight": model.token_embd.weight, "output_norm.weight": model.output_norm}
    if model.output is not None:
        names["output.weight"] = model.output.weight
    for i, layer in enumerate(model.layers):
        for gguf_name, param in (("attn_norm", layer.attn_norm), ("attn_q", layer.wq.weight),
                                 ("attn_k", layer.wk.weight), ("attn_v", layer.wv.weight),
                                 ("attn_output", layer.wo.weight), ("ffn_norm", layer.ffn_norm),
                                 ("ffn_gate", layer.w_gate.weight), ("ffn_up", layer.w_up.weight),
                                 ("ffn_down", layer.w_down.weight)):
            names[f"blk.{i}.{gguf_name}.weight"] = param
    with torch.no_grad():
        for name, param in names.items():
            param.copy_(torch.from_numpy(tensors[name]))
    return tok, cfg, model


class Batches(torch.utils.data.IterableDataset):
    """Endless tokenized batches from the training name pool; each worker its own seed."""

    def __init__(self, tok, seed, batch, context_docs):
        self.tok, self.seed, self.batch, self.context_docs = tok, seed, batch, context_docs

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        gen = data.Generator(self.seed * 1000 + wid + 1)
        rng = random.Random(self.seed * 7919 + wid)
        while True:
            yield make_batch(self.tok, [gen.example() for _ in range(self.batch)], rng, self.context_docs)


def pad(seqs, value=0):
    n = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (n - len(s)) for s in seqs], dtype=torch.long)


def answer_targets(seqs, n_prompt):
    """Targets for next-token loss on the answer (and EOS) only: -100 elsewhere."""
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), -100, dtype=torch.long)
    for i, (s, p) in enumerate(zip(seqs, n_prompt)):
        for t in range(p - 1, len(s) - 1):
            out[i, t] = s[t + 1]
    return out


def make_batch(tok, examples, rng, context_docs=3):
    """Tensors for one step; the in-context sequences hold context_docs documents (the asked one
    and distractors of the same kind)."""
    B = len(examples)
    docs = [tok.encode(e.document) for e in examples]
    prompts = [tok.encode(e.prompt) for e in examples]
    answers = [tok.encode(e.answer) + [tok.eos] for e in examples]
    newline = tok.encode("\n")
    by_kind = {}
    for i, e in enumerate(examples):
        by_kind.setdefault(e.kind, []).append(i)

    def distractors(i, n):
        same = [j for j in by_kind[examples[i].kind] if j != i]
        others = [j for j in range(B) if j != i]
        pool = same if len(same) >= n else others
        return rng.sample(pool, n)

    refs, ctx, ctx_prompt = [], [], []
    for i in range(B):
        r = [i] + distractors(i, N_MEMORY_REFS - 1)
        rng.shuffle(r)
        refs.append(r)
        shown = [i] + distractors(i, context_docs - 1)
        rng.shuffle(shown)
        seq = [tok.bos]
        for j in shown:
            seq += docs[j] + newline
        seq += prompts[i]
        ctx_prompt.append(len(seq))
        ctx.append(seq + answers[i])
    questions = [[tok.bos] + p + a for p, a in zip(prompts, answers)]
    return {
        "docs": pad([[tok.bos] + d for d in docs]),
        "doc_rows": torch.tensor([len(d) + 1 for d in docs]),
        "questions": pad(questions),
        "question_targets": answer_targets(questions, [len(p) + 1 for p in prompts]),
        "query": pad([[tok.bos] + p for p in prompts]),
        "query_rows": torch.tensor([len(p) + 1 for p in prompts]),
        "refs": torch.tensor(refs),
        "context": pad(ctx),
        "context_targets": answer_targets(ctx, ctx_prompt),
    }


def curriculum(progress, dense_from=0.1, sparse_from=0.35):
    """Loss weights at training progress in [0, 1]: facts in context -> dense -> sparse memory."""
    w = {"context": 1.0, "lm": 0.3, "retrieval": 0.5, "dense": 0.0, "sparse": 0.0}
    if progress >= dense_from:
        w["dense"] = 1.0
    if progress >= sparse_from:
        w["dense"] = 0.3
        w["sparse"] = 1.0
    return w


def train_step(model, b, w, device):
    c = model.config
    b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
    losses = {}
    enc = model.encode_references(b["docs"], b["doc_rows"], logits=w["lm"] > 0)
    if w["lm"] > 0:
        tgt = b["docs"][:, 1:].masked_fill(
            torch.arange(1, b["docs"].shape[1], device=device)[None, :] >= b["doc_rows"][:, None], -100)
        losses["lm"] = F.cross_entropy(enc.logits[:, :-1].flatten(0, 1).float(), tgt.flatten())
    if w["context"] > 0:
        ctx = b["context"]
        rows = b["context_targets"] >= 0
        logits = model(ctx, torch.arange(ctx.shape[1], device=device), logit_rows=rows)[0]
        losses["context"] = F.cross_entropy(logits.float(), b["context_targets"][rows])
    q = b["questions"]
    q_pos = torch.arange(q.shape[1], device=device) + M.REFERENCE_TOKENS
    q_rows = b["question_targets"] >= 0
    for mode in ("dense", "sparse"):
        if w[mode] > 0:
            memory = M.gather_memory(M.select(enc, b["doc_rows"], dense=mode == "dense"), b["refs"])
            logits = model(q, q_pos, memory=memory, logit_rows=q_rows)[0]
            losses[mode] = F.cross_entropy(logits.float(), b["question_targets"][q_rows])
    if w["retrieval"] > 0:
        qv = model.query_vectors(b["query"], b["query_rows"])
        sim = qv @ enc.vectors.t() / 0.05
        target = torch.arange(sim.shape[0], device=device)
        losses["retrieval"] = 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target))
    total = sum(w[k] * v for k, v in losses.items())
    return total, {k: v.item() for k, v in losses.items()}


@torch.no_grad()
def greedy(model, prompts, first_position, memory, tok, max_new=8):
    """Greedy answers (text up to EOS) for a batch of prompts (token lists, BOS included)."""
    device = next(model.parameters()).device
    seqs = [list(p) for p in prompts]
    done = [False] * len(seqs)
    outs = [[] for _ in seqs]
    for _ in range(max_new):
        x = pad(seqs).to(device)
        lengths = torch.tensor([len(s) for s in seqs], device=device)
        logits = model(x, torch.arange(x.shape[1], device=device) + first_position, memory=memory)[0]
        nxt = logits[torch.arange(len(seqs), device=device), lengths - 1].argmax(-1).tolist()
        for i, t in enumerate(nxt):
            if done[i]:
                continue
            if t == tok.eos:
                done[i] = True
            else:
                outs[i].append(t)
                seqs[i].append(t)
        if all(done):
            break
    return [tok.decode(o) for o in outs]


@torch.no_grad()
def evaluate(model, tok, seed, n=500, batch=100, pool_extra=0):
    """Held-out exact-answer recall. Memories come from top-5 retrieval among the n evaluation
    documents (plus pool_extra more), as the server would retrieve them."""
    model.eval()
    device = next(model.parameters()).device
    gen = data.Generator(seed, split="eval")
    examples = [gen.example() for _ in range(n + pool_extra)]
    docs = [tok.encode(e.document) for e in examples]
    # encode the whole pool
    vectors, dense_sel, sparse_sel = [], [], []
    for s in range(0, len(examples), batch):
        chunk = docs[s:s + batch]
        toks = pad([[tok.bos] + d for d in chunk]).to(device)
        rows = torch.tensor([len(d) + 1 for d in chunk], device=device)
        enc = model.encode_references(toks, rows)
        vectors.append(enc.vectors)
        dense_sel.append(M.select(enc, rows, dense=True))
        sparse_sel.append(M.select(enc, rows))
    vectors = torch.cat(vectors)
    dense_all = _concat_selected(dense_sel)
    sparse_all = _concat_selected(sparse_sel)
    rng = random.Random(seed)

    hits = {k: 0 for k in ("none", "context", "dense", "sparse", "sparse_oracle", "retrieval@5", "chance")}
    per_attr = {}
    for s in range(0, n, batch):
        ex = examples[s:min(s + batch, n)]
        prompts = [[tok.bos] + tok.encode(e.prompt) for e in ex]
        qv = model.query_vectors(pad(prompts).to(device), torch.tensor([len(p) for p in prompts], device=device))
        top = (qv @ vectors.t()).topk(N_MEMORY_REFS, dim=-1).indices
        # the right document and 4 others, whatever retrieval would have found
        oracle = torch.tensor([[s + i] + rng.sample([j for j in range(len(examples)) if j != s + i],
                                                    N_MEMORY_REFS - 1) for i in range(len(ex))],
                              device=device)
        answers = {
            "none": greedy(model, prompts, 0, None, tok),
            "context": greedy(model, [[tok.bos] + docs[s + i] + tok.encode("\n") + p[1:]
                                      for i, p in enumerate(prompts)], 0, None, tok),
            "dense": greedy(model, prompts, M.REFERENCE_TOKENS, M.gather_memory(dense_all, top), tok),
            "sparse": greedy(model, prompts, M.REFERENCE_TOKENS, M.gather_memory(sparse_all, top), tok),
            "sparse_oracle": greedy(model, prompts, M.REFERENCE_TOKENS, M.gather_memory(sparse_all, oracle), tok),
        }
        for i, e in enumerate(ex):
            for k, a in answers.items():
                ok = a[i].strip() == e.answer.strip()
                hits[k] += ok
                if k == "sparse":
                    per_attr.setdefault(e.attribute, [0, 0])
                    per_attr[e.attribute][0] += ok
                    per_attr[e.attribute][1] += 1
            hits["retrieval@5"] += (s + i) in top[i].tolist()
            hits["chance"] += data.chance(e.attribute, e.kind)
    model.train()
    result = {k: v / n for k, v in hits.items()}
    result["sparse_by_attribute"] = {a: round(h / t, 3) for a, (h, t) in sorted(per_attr.items())}
    result["n"] = n
    result["pool"] = len(examples)
    return result


def _concat_selected(parts):
    """Concatenates per-chunk selections, padding each to the most entries (dense chunks differ)."""
    out = {}
    for l in parts[0]:
        tensors = [p[l] for p in parts]
        M_max = max(t[0].shape[2] for t in tensors)
        cols = []
        for idx in range(4):
            items = []
            for t in tensors:
                x = t[idx]
                extra = M_max - x.shape[2]
                if extra:
                    shape = list(x.shape)
                    shape[2] = extra
                    x = torch.cat((x, torch.zeros(shape, dtype=x.dtype, device=x.device)), dim=2)
                items.append(x)
            cols.append(torch.cat(items))
        out[l] = tuple(cols)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="GGUF file to write")
    ap.add_argument("--log", help="JSON log (default: OUT with .json)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--init", help="continue from this GGUF (written by this trainer); its shape and "
                    "tokenizer replace --layers ... --merges")
    ap.add_argument("--steps", type=int, default=4000, help="steps (when --minutes is not given)")
    ap.add_argument("--minutes", type=float, help="train for this long instead; the curriculum and "
                    "learning rate follow elapsed time")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=704)
    ap.add_argument("--dense-from", type=float, default=0.1, help="progress where dense memory starts")
    ap.add_argument("--sparse-from", type=float, default=0.35, help="progress where sparse memory starts")
    ap.add_argument("--context-docs", type=int, default=3, help="documents in the in-context sequences")
    ap.add_argument("--warmup", type=int, default=200, help="learning-rate warmup steps")
    ap.add_argument("--merges", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--eval-n", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between small evaluations")
    ap.add_argument("--f32", action="store_true", help="export f32 matrices (default f16)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    if args.init:
        tok, cfg, model = load_gguf(args.init)
        model = model.to(device)
    else:
        tok = build_tokenizer(args.seed, args.merges)
        cfg = M.Config(n_vocab=tok.vocab_size, n_layers=args.layers, n_embd=args.dim, n_heads=args.heads,
                       n_kv_heads=args.kv_heads, n_ff=args.ff)
        model = M.MemoriaLM(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device {device}, vocab {tok.vocab_size}, params {n_params / 1e6:.2f}M, "
          f"tokenizer {time.time() - t0:.1f}s", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    loader = torch.utils.data.DataLoader(Batches(tok, args.seed, args.batch, args.context_docs), batch_size=None,
                                         num_workers=args.workers, pin_memory=device == "cuda",
                                         persistent_workers=args.workers > 0)
    log = {"args": vars(args), "config": dataclasses.asdict(cfg), "params": n_params, "steps": []}
    use_bf16 = device == "cuda"
    t_start = time.time()
    step = 0
    for batch in loader:
        elapsed = time.time() - t_start
        progress = elapsed / (60 * args.minutes) if args.minutes else step / args.steps
        if progress >= 1:
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        w = curriculum(progress, args.dense_from, args.sparse_from)
        if use_bf16:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss, parts = train_step(model, batch, w, device)
        else:
            loss, parts = train_step(model, batch, w, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            line = {"step": step, "t": round(elapsed, 1), "progress": round(progress, 3), "lr": round(lr, 6),
                    **{k: round(v, 4) for k, v in parts.items()}}
            log["steps"].append(line)
            print(json.dumps(line), flush=True)
        if args.eval_every and step % args.eval_every == 0 and step > 0:
            print("eval", json.dumps(evaluate(model, tok, args.seed + 1, n=100)), flush=True)
        step += 1
    log["train_seconds"] = round(time.time() - t_start, 1)
    log["train_steps"] = step
    print(f"trained {step} steps in {log['train_seconds']}s", flush=True)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model = model.float()
    gguf.export(model, tok, args.out, f16=not args.f32)
    log["gguf_bytes"] = os.path.getsize(args.out)
    if not args.f32:  # evaluate the weights the GGUF holds
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.copy_(p.half().float())
    log_path = args.log or os.path.splitext(args.out)[0] + ".json"
    with open(log_path, "w") as f:  # written again with the evaluation
        json.dump(log, f, indent=1)
    t_eval = time.time()
    log["eval"] = evaluate(model, tok, args.seed + 1, n=args.eval_n, pool_extra=args.eval_n)
    log["eval_seconds"] = round(time.time() - t_eval, 1)
    print("eval", json.dumps(log["eval"]), flush=True)
    with open(log_path, "w") as f:
        json.dump(log, f, indent=1)


if __name__ == "__main__":
    main()
