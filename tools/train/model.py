"""A Llama-shape model whose attention reads explicit memories exactly as the engine does
(../shared/MEMORY.md; engine/model/llama.cc, engine/backend/cpu/cpu_attention.cc,
memstore/compiler.cc):

- RMSNorm, RoPE "normal" style (adjacent pairs rotate), GQA (query head h reads KV group
  h // (n_heads / n_kv_heads)), SwiGLU, tied or untied output.
- A reference is encoded on its own as [BOS] + tokens at positions 0..n; in each memory layer
  (the first half, unless the model declares its own: memoria.memory_layers) and KV head, token
  j's attention mass is summed over the group's query heads and the queries i >= j, divided by
  the n_rows - j queries that see it (MassRule::kPerQuery), and the k best tokens are kept (never
  BOS; ties to the earlier token). Keys are kept before RoPE with their positions in the
  reference. Dense keeps every row, BOS included.
- A sequence with memories starts at position R = 128 ("parallel" positions). In a memory layer
  each query head attends over [the memory entries of its KV group] + [its causal context] in
  one softmax; memory keys are rotated with their stored positions.
- The retrieval vector is the mean of the hidden states entering layer n_layers / 2 over the
  reference's tokens (BOS excluded), L2-normalized.

Gradients flow through the kept keys and values; which tokens are kept is a discrete choice, which
a loss can only steer through the mass itself (train.py's keep loss).
Written for torch 1.13 (Debian) and torch 2.x (no API newer than 1.13).
"""

import dataclasses
import math

import torch
import torch.nn.functional as F


@dataclasses.dataclass
class Config:
    n_vocab: int
    n_layers: int = 8
    n_embd: int = 256
    n_heads: int = 8
    n_kv_heads: int = 4
    n_ff: int = 704
    context_length: int = 512
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-5
    tied_embeddings: bool = True
    # The layers the model is trained to read memories in, exported as memoria.memory_layers;
    # empty = MEMORY.md's default, the first half.
    declared_memory_layers: tuple = ()
    # The retrieval score gap shipped with the model (memoria.retrieval.score_gap): the server
    # keeps references scoring within it of the best one; None = none declared (all kept).
    retrieval_score_gap: float = None

    @property
    def head_dim(self):
        return self.n_embd // self.n_heads

    @property
    def memory_layers(self):
        """Layers whose attention reads memories (what the engine's compiler takes by default)."""
        if self.declared_memory_layers:
            return sorted(self.declared_memory_layers)
        return list(range(max(1, self.n_layers // 2)))

    @property
    def embedding_layer(self):
        """Residual-stream layer whose mean is the retrieval vector (CompilerOptions default)."""
        return self.n_layers // 2


# MEMORY.md defaults, as the server uses them.
REFERENCE_TOKENS = 128  # R: a sequence with memories starts at this position
KEPT_TOKENS = 8         # k: entries kept per memory layer and KV head


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_cos_sin(positions, head_dim, base):
    """cos/sin of theta_i(p) = p * base^(-2i / head_dim), computed as cpu_backend.cc does
    (frequencies rounded to float, angles in double)."""
    i = torch.arange(head_dim // 2, dtype=torch.float64, device=positions.device)
    inv_freq = torch.pow(torch.tensor(base, dtype=torch.float64), -2.0 * i / head_dim).float()
    theta = positions.to(torch.float64).unsqueeze(-1) * inv_freq.double()
    return torch.cos(theta).float(), torch.sin(theta).float()


def rotate(x, cos, sin):
    """RoPE "normal" style: elements (2i, 2i + 1) of each head rotate by theta_i."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Memory:
    """What a batch of sequences attends to besides its own tokens: for each memory layer,
    keys (before RoPE) and values [B, n_kv_heads, M, head_dim], positions [B, n_kv_heads, M] and a
    validity mask [B, n_kv_heads, M] (padding where references keep different counts).
    `attention` is filled by a forward pass: layer -> each query head's softmax weight on every
    entry [B, n_kv_heads, heads per group, T, M], for losses on where the attention goes."""

    def __init__(self, layers):
        self.layers = layers  # layer -> (keys, values, positions, valid)
        self.attention = {}


@dataclasses.dataclass
class Encoded:
    """One encoding pass over references ([BOS] + tokens, padded): per memory layer the pre-RoPE
    keys/values [D, S, n_kv, hd] and the attention mass [D, n_kv, S] (with its gradient: a loss may
    shape which tokens are kept); the retrieval vectors [D, d];
    the logits when asked for."""
    kv: dict
    mass: dict
    vectors: torch.Tensor
    logits: torch.Tensor = None


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        hd = c.head_dim
        self.attn_norm = torch.nn.Parameter(torch.ones(c.n_embd))
        self.wq = torch.nn.Linear(c.n_embd, c.n_heads * hd, bias=False)
        self.wk = torch.nn.Linear(c.n_embd, c.n_kv_heads * hd, bias=False)
        self.wv = torch.nn.Linear(c.n_embd, c.n_kv_heads * hd, bias=False)
        self.wo = torch.nn.Linear(c.n_heads * hd, c.n_embd, bias=False)
        self.ffn_norm = torch.nn.Parameter(torch.ones(c.n_embd))
        self.w_gate = torch.nn.Linear(c.n_embd, c.n_ff, bias=False)
        self.w_up = torch.nn.Linear(c.n_embd, c.n_ff, bias=False)
        self.w_down = torch.nn.Linear(c.n_ff, c.n_embd, bias=False)


class MemoriaLM(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        c = self.config = config
        self.token_embd = torch.nn.Embedding(c.n_vocab, c.n_embd)
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c.n_layers))
        self.output_norm = torch.nn.Parameter(torch.ones(c.n_embd))
        self.output = None if c.tied_embeddings else torch.nn.Linear(c.n_embd, c.n_vocab, bias=False)
        self.reset_parameters()

    def reset_parameters(self, std=0.02):
        for name, p in self.named_parameters():
            if p.dim() == 2:
                scale = 1 / math.sqrt(2 * self.config.n_layers) if name.endswith(("wo.weight", "w_down.weight")) else 1
                torch.nn.init.normal_(p, std=std * scale)

    def output_weight(self):
        return self.token_embd.weight if self.output is None else self.output.weight

    def forward(self, tokens, positions, memory=None, query_rows=None, kv_layers=(), mass=False,
                hidden_layer=None, logits=True, logit_rows=None):
        """tokens [B, T]; positions [T] or [B, T]. Returns (logits [B, T, V] or None, kv, mass,
        hidden); with `logit_rows` [B, T] (bool), logits [N, V] of those rows only. kv: layer -> (keys, values) before RoPE [B, T, n_kv, hd] for `kv_layers`; mass:
        layer -> [B, n_kv, T] summed over the rows `query_rows` [B, T] (bool) marks as real; hidden:
        the residual stream entering `hidden_layer` [B, T, d]."""
        c = self.config
        B, T = tokens.shape
        H, G, hd = c.n_heads, c.n_kv_heads, c.head_dim
        r = H // G
        cos, sin = rope_cos_sin(positions, hd, c.rope_freq_base)
        if cos.dim() == 2:
            cos, sin = cos.unsqueeze(0), sin.unsqueeze(0)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # [B or 1, T, 1, hd/2]
        causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
        scale = 1.0 / math.sqrt(hd)
        kv_out, mass_out, hidden = {}, {}, None
        last_layer = c.n_layers
        if not logits:
            last_layer = max([l + 1 for l in kv_layers] + [hidden_layer or 0])

        x = self.token_embd(tokens)
        for l, w in enumerate(self.layers):
            if l == hidden_layer:
                hidden = x
            if l == last_layer:
                return None, kv_out, mass_out, hidden
            h = rms_norm(x, w.attn_norm, c.rms_eps)
            q = w.wq(h).view(B, T, H, hd)
            k = w.wk(h).view(B, T, G, hd)
            v = w.wv(h).view(B, T, G, hd)
            if l in kv_layers:
                kv_out[l] = (k, v)
            q = rotate(q, cos, sin).view(B, T, G, r, hd).permute(0, 2, 3, 1, 4)  # [B, G, r, T, hd]
            kr = rotate(k, cos, sin).permute(0, 2, 1, 3)                           # [B, G, T, hd]
            vt = v.permute(0, 2, 1, 3)
            scores = torch.einsum("bgrtd,bgsd->bgrts", q, kr)
            scores = scores.masked_fill(~causal, float("-inf"))
            mem = memory.layers.get(l) if memory is not None else None
            n_mem = 0
            if mem is not None:
                mk, mv, mpos, mvalid = mem
                mcos, msin = rope_cos_sin(mpos, hd, c.rope_freq_base)
                mk = rotate(mk, mcos, msin)
                mscores = torch.einsum("bgrtd,bgmd->bgrtm", q, mk)
                mscores = mscores.masked_fill(~mvalid[:, :, None, None, :], float("-inf"))
                scores = torch.cat((mscores, scores), dim=-1)
                n_mem = mk.shape[2]
            p = torch.softmax(scores.float() * scale, dim=-1).to(q.dtype)
            out = torch.einsum("bgrts,bgsd->bgrtd", p[..., n_mem:], vt)
            if mem is not None:
                out = out + torch.einsum("bgrtm,bgmd->bgrtd", p[..., :n_mem], mv)
                memory.attention[l] = p[..., :n_mem]
            if mass and l in kv_layers:
                pc = p[..., n_mem:].float()
                if query_rows is not None:
                    pc = pc * query_rows[:, None, None, :, None]
                mass_out[l] = pc.sum(dim=(2, 3))
            out = out.permute(0, 3, 1, 2, 4).reshape(B, T, H * hd)
            x = x + w.wo(out)
            h = rms_norm(x, w.ffn_norm, c.rms_eps)
            x = x + w.w_down(F.silu(w.w_gate(h)) * w.w_up(h))
        if hidden_layer == c.n_layers:
            hidden = x
        if not logits:
            return None, kv_out, mass_out, hidden
        if logit_rows is not None:
            x = x[logit_rows]
        x = rms_norm(x, self.output_norm, c.rms_eps)
        return F.linear(x, self.output_weight()), kv_out, mass_out, hidden

    def encode_references(self, tokens, n_rows, logits=False):
        """One pass over references [D, S] = [BOS] + tokens (padded after n_rows [D] real rows) at
        positions 0..S-1: the memory layers' pre-RoPE K/V and attention mass, and the retrieval
        vectors (mean over rows 1..n_rows-1 of the hidden states entering embedding_layer)."""
        c = self.config
        S = tokens.shape[1]
        rows = torch.arange(S, device=tokens.device)
        real = rows[None, :] < n_rows[:, None]
        out_logits, kv, mass, hidden = self.forward(
            tokens, rows, query_rows=real, kv_layers=c.memory_layers, mass=True,
            hidden_layer=c.embedding_layer, logits=logits)
        return Encoded(kv=kv, mass=mass, vectors=mean_vector(hidden, real & (rows[None, :] >= 1)),
                       logits=out_logits)

    def query_vectors(self, tokens, n_rows):
        """Retrieval vectors of queries [B, S] = [BOS] + their last up-to-R tokens (padded)."""
        S = tokens.shape[1]
        rows = torch.arange(S, device=tokens.device)
        real = (rows[None, :] < n_rows[:, None]) & (rows[None, :] >= 1)
        _, _, _, hidden = self.forward(tokens, rows, hidden_layer=self.config.embedding_layer,
                                       logits=False)
        return mean_vector(hidden, real)


def mean_vector(hidden, rows):
    s = (hidden.float() * rows[..., None]).sum(1)
    return s / s.norm(dim=-1, keepdim=True).clamp_min(1e-20)


def per_query_mass(mass, n_rows):
    """Mass [D, n_kv, S] divided by the number of queries that see each row (MassRule::kPerQuery)."""
    rows = torch.arange(mass.shape[-1], device=mass.device)
    return mass / (n_rows[:, None, None] - rows[None, None, :]).clamp_min(1).float()


def select(encoded, n_rows, kept_tokens=KEPT_TOKENS, dense=False):
    """The kept entries of each encoded reference, per memory layer: (keys, values, positions,
    valid) with [D, n_kv, M, ...] shapes as Memory expects. Sparse keeps the kept_tokens rows with
    the largest per-query mass (mass / (n_rows - j)), never BOS, ties to the earlier row; a
    reference with at most kept_tokens tokens keeps all of them. Dense keeps rows 0..n_rows-1."""
    out = {}
    for l, (k, v) in encoded.kv.items():
        D, S, G, hd = k.shape
        rows = torch.arange(S, device=k.device)
        real = rows[None, :] < n_rows[:, None]  # [D, S]
        if dense:
            idx = rows.view(1, 1, S).expand(D, G, S)
            valid = real[:, None, :].expand(D, G, S)
        else:
            keep = real & (rows[None, :] >= 1)
            score = per_query_mass(encoded.mass[l].detach(), n_rows).masked_fill(~keep[:, None, :], float("-inf"))
            m = min(kept_tokens, S)
            order = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :m]
            idx = torch.sort(order, dim=-1).values
            valid = torch.gather(keep[:, None, :].expand(D, G, S), 2, idx)
        kk = torch.gather(k.permute(0, 2, 1, 3), 2, idx[..., None].expand(*idx.shape, hd))
        vv = torch.gather(v.permute(0, 2, 1, 3), 2, idx[..., None].expand(*idx.shape, hd))
        out[l] = (kk, vv, idx, valid)
    return out


def gather_memory(selected, refs):
    """Memory for a batch: sequence b reads the references refs[b] ([B, n_refs] indices into the
    encoded batch; -1 = none) side by side."""
    layers = {}
    B, n = refs.shape
    present = refs >= 0
    safe = refs.clamp_min(0)
    for l, (k, v, pos, valid) in selected.items():
        _, G, M, hd = k.shape

        def pick(t):  # [B, n, G, M, ...] -> [B, G, n * M, ...]
            return t.transpose(1, 2).reshape(B, G, n * M, *t.shape[4:])
        ok = valid[safe] & present[:, :, None, None]
        layers[l] = (pick(k[safe]), pick(v[safe]), pick(pos[safe]), pick(ok))
    return Memory(layers)
