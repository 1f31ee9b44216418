"""Trains memoria-mini: a small Llama-shape model that answers questions from explicit memories
(../shared/MEMORY.md), and exports it to GGUF. tools/train/retrain.sh runs the seeded stages that
made the committed model; one run:

  python3 tools/train/train.py --out models/memoria-mini.gguf --minutes 6 --memory-layers all \
      --calibrate-score-gap

Each step takes a batch of fictional entities (tools/train/data.py): every document is encoded as a
reference ([BOS] + tokens, positions 0..n) in one pass that also gives the language-modelling loss
on the document, the memory layers' K/V and attention mass, and the retrieval vectors. The losses:
- context: the question answered with the document (and same-kind distractors) in the context;
- memory: the question at position R = 128 with 5 references as memory (its own and the 4 other
  documents of the batch that retrieval ranks highest, as the server would retrieve them), dense,
  then sparse (k = 8 by per-query mass) as the curriculum advances;
- keep: a hinge that makes sparse selection keep every stated value (the mass is steered, the
  selection itself stays MEMORY.md's);
- find: the answer's memory attention in the upper memory layers should fall on its own document;
- retrieval: InfoNCE between the question's retrieval vector and the documents' vectors, so the
  server's top-5 retrieval finds the document;
- lm: next-token loss on the documents.
Curriculum (by progress, steps or time): context only -> + dense memory -> + sparse memory.
At the end it can calibrate the retrieval score gap shipped in the GGUF (--calibrate-score-gap) and
measures held-out recall (entities whose names never appear in training) with no memory, with the
document in context, and with retrieved dense / sparse memories.
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
                   tied_embeddings="output.weight" not in tensors,
                   declared_memory_layers=tuple(meta.get("memoria.memory_layers", ())),
                   retrieval_score_gap=meta.get("memoria.retrieval.score_gap"))
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
    docs, value_rows = [], []
    for e in examples:
        ids, spans = tok.encode_with_spans(e.document)
        docs.append(ids)
        # rows of [BOS] + document whose token overlaps a stated value
        value_rows.append([0] + [int(any(s < b and a < t for a, b in e.value_spans)) for s, t in spans])
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
        "value_rows": pad(value_rows).bool(),
        "questions": pad(questions),
        "question_targets": answer_targets(questions, [len(p) + 1 for p in prompts]),
        "query": pad([[tok.bos] + p for p in prompts]),
        "query_rows": torch.tensor([len(p) + 1 for p in prompts]),
        "refs": torch.tensor(refs),
        "context": pad(ctx),
        "context_targets": answer_targets(ctx, ctx_prompt),
    }


def curriculum(progress, dense_from=0.1, sparse_from=0.35, keep_weight=0.0, find_weight=0.0):
    """Loss weights at training progress in [0, 1]: facts in context -> dense -> sparse memory;
    the keep loss from the start (it shapes the encoding pass before sparse memory needs it), the
    find loss with sparse memory."""
    w = {"context": 1.0, "lm": 0.3, "retrieval": 0.5, "dense": 0.0, "sparse": 0.0, "keep": keep_weight,
         "find": 0.0}
    if progress >= dense_from:
        w["dense"] = 1.0
    if progress >= sparse_from:
        w["dense"] = 0.3
        w["sparse"] = 1.0
        w["find"] = find_weight
    return w


def keep_loss(enc, doc_rows, value_rows, kept_tokens=M.KEPT_TOKENS, margin=math.log(2.0)):
    """Makes sparse selection keep every stated value: in each memory layer and KV head, each value
    token's per-query mass should exceed, by a factor e^margin, the mass of the non-value token
    that would otherwise take the last of the k slots left to non-values. A hinge on log mass, so
    it is zero (and leaves attention alone) once the values are safely kept."""
    total, count = 0.0, 0
    S = value_rows.shape[1]
    rows = torch.arange(S, device=value_rows.device)
    real = (rows[None, :] < doc_rows[:, None]) & (rows[None, :] >= 1)
    values = value_rows & real
    others = real & ~value_rows
    n_values = values.sum(1)
    for l, mass in enc.mass.items():
        log_m = torch.log(M.per_query_mass(mass.float(), doc_rows).clamp_min(1e-9))  # [D, G, S]
        other = log_m.masked_fill(~others[:, None, :], float("-inf")).sort(dim=-1, descending=True).values
        slot = (kept_tokens - n_values).clamp(0, S - 1)                               # [D]
        threshold = other.gather(2, slot[:, None, None].expand(-1, other.shape[1], 1))  # [D, G, 1]
        threshold = threshold.masked_fill(torch.isinf(threshold), -30.0).detach()
        hinge = F.relu(threshold + margin - log_m) * values[:, None, :]
        total = total + hinge.sum()
        count += int(values.sum()) * mass.shape[1]
    return total / max(count, 1)


def find_loss(memory, refs, rows, first_layer):
    """Teaches the answer's queries which reference to read: in the memory layers from
    `first_layer` on (where a query has seen the question), the share of each query head's
    memory attention that falls on its own document's entries, -log of it averaged over the heads
    and the answer rows. Among references retrieved for a similar name, only the name tells them
    apart; the answer loss alone teaches that slowly."""
    B, n_refs = refs.shape
    gold = (refs == torch.arange(B, device=refs.device)[:, None]).float()  # [B, n_refs]
    total, count = 0.0, 0
    for l, a in memory.attention.items():
        if l < first_layer:
            continue
        per_ref = a.float().unflatten(-1, (n_refs, -1)).sum(-1)             # [B, G, r, T, n_refs]
        share = (per_ref * gold[:, None, None, None, :]).sum(-1) / per_ref.sum(-1).clamp_min(1e-9)
        nll = -torch.log(share.clamp_min(1e-6)) * rows[:, None, None, :]
        total = total + nll.sum()
        count += int(rows.sum()) * a.shape[1] * a.shape[2]
    return total / max(count, 1)


def retrieved_refs(query_vectors, doc_vectors):
    """The references each question reads, as the server picks them: the top 5 of the batch's
    documents by retrieval score, its own document forced into the last slot if retrieval missed
    it. The distractors are then the documents most like the asked one, as at serving time."""
    top = (query_vectors @ doc_vectors.t()).detach().topk(N_MEMORY_REFS, dim=-1).indices
    own = torch.arange(top.shape[0], device=top.device)
    missed = ~(top == own[:, None]).any(dim=1)
    top[missed, -1] = own[missed]
    return top


def train_step(model, b, w, device, distractors="retrieved"):
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
    qv = model.query_vectors(b["query"], b["query_rows"])
    refs = b["refs"] if distractors == "random" else retrieved_refs(qv, enc.vectors)
    q = b["questions"]
    q_pos = torch.arange(q.shape[1], device=device) + M.REFERENCE_TOKENS
    q_rows = b["question_targets"] >= 0
    for mode in ("dense", "sparse"):
        if w[mode] > 0:
            memory = M.gather_memory(M.select(enc, b["doc_rows"], dense=mode == "dense"), refs)
            logits = model(q, q_pos, memory=memory, logit_rows=q_rows)[0]
            losses[mode] = F.cross_entropy(logits.float(), b["question_targets"][q_rows])
            if mode == "sparse" and w["find"] > 0:
                losses["find"] = find_loss(memory, refs, q_rows, c.n_layers // 2)
    if w["keep"] > 0:
        losses["keep"] = keep_loss(enc, b["doc_rows"], b["value_rows"])
    if w["retrieval"] > 0:
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


class _Pool:
    """Documents encoded as the server stores them: retrieval vectors and the dense and sparse
    memories of each."""

    @torch.no_grad()
    def __init__(self, model, tok, examples, batch=100):
        device = next(model.parameters()).device
        self.docs = [tok.encode(e.document) for e in examples]
        vectors, dense_sel, sparse_sel = [], [], []
        for s in range(0, len(examples), batch):
            chunk = self.docs[s:s + batch]
            toks = pad([[tok.bos] + d for d in chunk]).to(device)
            rows = torch.tensor([len(d) + 1 for d in chunk], device=device)
            enc = model.encode_references(toks, rows)
            vectors.append(enc.vectors)
            dense_sel.append(M.select(enc, rows, dense=True))
            sparse_sel.append(M.select(enc, rows))
        self.vectors = torch.cat(vectors)
        self.dense = _concat_selected(dense_sel)
        self.sparse = _concat_selected(sparse_sel)

    def retrieve(self, query_vectors, score_gap):
        """The top-5 documents of each query, -1 where the score is more than score_gap below
        the best one's (as the server drops them; None keeps all), and the top 5 unfiltered."""
        scores, top = (query_vectors @ self.vectors.t()).topk(N_MEMORY_REFS, dim=-1)
        if score_gap is None:
            return top, top
        return top.masked_fill(scores < scores[:, :1] - score_gap, -1), top


def _query_vectors(model, prompts):
    device = next(model.parameters()).device
    return model.query_vectors(pad(prompts).to(device), torch.tensor([len(p) for p in prompts], device=device))


def _correct(answers, examples):
    return [a.strip() == e.answer.strip() for a, e in zip(answers, examples)]


@torch.no_grad()
def calibrate_score_gap(model, tok, seed, n=200, gaps=(0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)):
    """The retrieval score gap to ship with the model (memoria.retrieval.score_gap): the one with
    the best sparse-memory recall on training-pool entities (never the evaluation's), preferring
    the larger gap within one point, so that references about as relevant as the best stay. The
    server then keeps only the top references scoring within the gap of the best one, so
    look-alike documents (a similar name) do not compete with the right one in attention."""
    model.eval()
    gen = data.Generator(seed, split="train")
    examples = [gen.example() for _ in range(2 * n)]
    pool = _Pool(model, tok, examples)
    prompts = [[tok.bos] + tok.encode(e.prompt) for e in examples[:n]]
    qv = _query_vectors(model, prompts)
    recall = {}
    for gap in gaps:
        refs, _ = pool.retrieve(qv, gap)
        answers = greedy(model, prompts, M.REFERENCE_TOKENS, M.gather_memory(pool.sparse, refs), tok)
        recall[gap] = sum(_correct(answers, examples)) / n
    model.train()
    best = max(recall.values())
    return max(g for g in gaps if recall[g] >= best - 0.01), recall


@torch.no_grad()
def evaluate(model, tok, seed, n=500, batch=100, pool_extra=0):
    """Held-out exact-answer recall. Memories come from top-5 retrieval among the n evaluation
    documents (plus pool_extra more) within the model's retrieval score gap, as the server would
    retrieve them; "sparse_top5" is the top 5 whatever their scores."""
    model.eval()
    device = next(model.parameters()).device
    gen = data.Generator(seed, split="eval")
    examples = [gen.example() for _ in range(n + pool_extra)]
    pool = _Pool(model, tok, examples, batch)
    rng = random.Random(seed)

    hits = {k: 0 for k in ("none", "context", "dense", "sparse", "sparse_top5", "sparse_oracle",
                           "retrieval@5", "chance")}
    per_attr = {}
    for s in range(0, n, batch):
        ex = examples[s:min(s + batch, n)]
        prompts = [[tok.bos] + tok.encode(e.prompt) for e in ex]
        top, top5 = pool.retrieve(_query_vectors(model, prompts), model.config.retrieval_score_gap)
        # the right document and 4 others, whatever retrieval would have found
        oracle = torch.tensor([[s + i] + rng.sample([j for j in range(len(examples)) if j != s + i],
                                                    N_MEMORY_REFS - 1) for i in range(len(ex))],
                              device=device)

        def with_memory(selected, refs):
            return greedy(model, prompts, M.REFERENCE_TOKENS, M.gather_memory(selected, refs), tok)
        answers = {
            "none": greedy(model, prompts, 0, None, tok),
            "context": greedy(model, [[tok.bos] + pool.docs[s + i] + tok.encode("\n") + p[1:]
                                      for i, p in enumerate(prompts)], 0, None, tok),
            "dense": with_memory(pool.dense, top),
            "sparse": with_memory(pool.sparse, top),
            "sparse_top5": with_memory(pool.sparse, top5),
            "sparse_oracle": with_memory(pool.sparse, oracle),
        }
        for k, a in answers.items():
            for e, ok in zip(ex, _correct(a, ex)):
                hits[k] += ok
                if k == "sparse":
                    per_attr.setdefault(e.attribute, [0, 0])
                    per_attr[e.attribute][0] += ok
                    per_attr[e.attribute][1] += 1
        for i, e in enumerate(ex):
            hits["retrieval@5"] += (s + i) in top[i].tolist()
            hits["chance"] += data.chance(e.attribute, e.kind)
    model.train()
    result = {k: v / n for k, v in hits.items()}
    result["sparse_by_attribute"] = {a: round(h / t, 3) for a, (h, t) in sorted(per_attr.items())}
    result["n"] = n
    result["pool"] = len(examples)
    result["score_gap"] = model.config.retrieval_score_gap
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
    ap.add_argument("--keep-weight", type=float, default=1.0, help="weight of the loss that makes sparse "
                    "selection keep the stated values (0 = off)")
    ap.add_argument("--find-weight", type=float, default=1.0, help="weight of the loss that points the "
                    "answer's memory attention at its own document (upper memory layers; 0 = off)")
    ap.add_argument("--calibrate-score-gap", action="store_true", help="after training, pick the retrieval "
                    "score gap with the best sparse recall on training entities and ship it "
                    "(memoria.retrieval.score_gap)")
    ap.add_argument("--memory-layers", choices=("half", "all"), default="half",
                    help="layers that read memories: MEMORY.md's default first half, or all (declared in the "
                    "GGUF as memoria.memory_layers); with --init, 'all' changes the loaded model's")
    ap.add_argument("--distractors", choices=("retrieved", "random"), default="retrieved",
                    help="the 4 other references a question reads: the batch's documents retrieval ranks "
                    "highest (as the server does), or random ones of the same kind")
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
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
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
    if args.memory_layers == "all":
        cfg.declared_memory_layers = tuple(range(cfg.n_layers))
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
        if args.minutes:
            progress = elapsed / (60 * args.minutes)
        else:
            progress = step / args.steps if args.steps else 1.0  # --steps 0: export (and calibrate) only
        if progress >= 1:
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        w = curriculum(progress, args.dense_from, args.sparse_from, args.keep_weight, args.find_weight)
        if use_bf16:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss, parts = train_step(model, batch, w, device, args.distractors)
        else:
            loss, parts = train_step(model, batch, w, device, args.distractors)
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
            gguf.export(model, tok, args.out + ".partial", f16=not args.f32)  # to stop early and keep it
        step += 1
    log["train_seconds"] = round(time.time() - t_start, 1)
    log["train_steps"] = step
    print(f"trained {step} steps in {log['train_seconds']}s", flush=True)
    model = model.float()
    if not args.f32:  # calibrate and evaluate the weights the GGUF holds
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.copy_(p.half().float())
    if args.calibrate_score_gap:
        cfg.retrieval_score_gap, log["score_gap_recall"] = calibrate_score_gap(model, tok, args.seed + 2)
        print(f"retrieval score gap {cfg.retrieval_score_gap}: {json.dumps(log['score_gap_recall'])}", flush=True)
    gguf.export(model, tok, args.out, f16=not args.f32)
    log["gguf_bytes"] = os.path.getsize(args.out)
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
