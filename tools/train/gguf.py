"""Writes the trained model as GGUF v3 (docs/gguf.md) the way the engine reads a llama model:
general.architecture = llama, llama.* hyper-parameters, tokenizer.ggml.* (byte-level BPE, "gpt2"
with the "gpt-2" pre-tokenizer), tensors named as engine/model/llama.cc loads them. Matrices keep
torch's [out, in] row-major layout, which is GGUF's dims [in, out] (dims[0] contiguous)."""

import struct

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# GGUF metadata value types
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types
GGML_F32, GGML_F16 = 0, 1


def _string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(kind, value):
    if kind == STRING:
        return _string(value)
    if kind == UINT32:
        return struct.pack("<I", value)
    if kind == INT32:
        return struct.pack("<i", value)
    if kind == FLOAT32:
        return struct.pack("<f", value)
    if kind == BOOL:
        return struct.pack("<B", 1 if value else 0)
    raise ValueError(f"gguf: unsupported value type {kind}")


class GgufWriter:
    def __init__(self):
        self.metadata = []  # (key, type, value, element type for arrays)
        self.tensors = []   # (name, ggml type, numpy array)

    def add(self, key, kind, value):
        self.metadata.append((key, kind, value, None))

    def add_array(self, key, element_kind, values):
        self.metadata.append((key, ARRAY, list(values), element_kind))

    def add_tensor(self, name, array, f16=False):
        a = np.ascontiguousarray(array, dtype=np.float16 if f16 else np.float32)
        self.tensors.append((name, GGML_F16 if f16 else GGML_F32, a))

    def write(self, path):
        out = bytearray(GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.metadata)))
        for key, kind, value, element in self.metadata:
            out += _string(key) + struct.pack("<I", kind)
            if kind == ARRAY:
                out += struct.pack("<IQ", element, len(value))
                for v in value:
                    out += _value(element, v)
            else:
                out += _value(kind, value)
        offset = 0
        for name, kind, a in self.tensors:
            dims = list(reversed(a.shape))  # dims[0] is the contiguous row length
            out += _string(name) + struct.pack("<I", len(dims))
            out += b"".join(struct.pack("<Q", d) for d in dims)
            out += struct.pack("<IQ", kind, offset)
            offset += _aligned(a.nbytes)
        out += bytes(_aligned(len(out)) - len(out))
        with open(path, "wb") as f:
            f.write(out)
            for _, _, a in self.tensors:
                f.write(a.tobytes())
                f.write(bytes(_aligned(a.nbytes) - a.nbytes))


def _aligned(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def export(model, tokenizer, path, f16=True, name="memoria-mini"):
    """Writes `model` (tools/train/model.py) with `tokenizer` (tools/train/tokenizer.py). Norm
    weights stay f32 (the engine requires 1-D tensors in f32); matrices are f16 when `f16`."""
    c = model.config
    w = GgufWriter()
    w.add("general.architecture", STRING, "llama")
    w.add("general.name", STRING, name)
    w.add("llama.block_count", UINT32, c.n_layers)
    w.add("llama.context_length", UINT32, c.context_length)
    w.add("llama.embedding_length", UINT32, c.n_embd)
    w.add("llama.feed_forward_length", UINT32, c.n_ff)
    w.add("llama.attention.head_count", UINT32, c.n_heads)
    w.add("llama.attention.head_count_kv", UINT32, c.n_kv_heads)
    w.add("llama.rope.dimension_count", UINT32, c.head_dim)
    w.add("llama.rope.freq_base", FLOAT32, c.rope_freq_base)
    w.add("llama.attention.layer_norm_rms_epsilon", FLOAT32, c.rms_eps)
    w.add("llama.vocab_size", UINT32, c.n_vocab)
    if c.declared_memory_layers:  # the engine's compiler reads memories in these by default
        w.add_array("memoria.memory_layers", INT32, sorted(c.declared_memory_layers))
    if c.retrieval_score_gap is not None:  # the server's default retrieval score gap
        w.add("memoria.retrieval.score_gap", FLOAT32, c.retrieval_score_gap)
    w.add("tokenizer.ggml.model", STRING, "gpt2")
    w.add("tokenizer.ggml.pre", STRING, "gpt-2")
    w.add_array("tokenizer.ggml.tokens", STRING, tokenizer.tokens)
    w.add_array("tokenizer.ggml.token_type", INT32, tokenizer.token_types())
    w.add_array("tokenizer.ggml.merges", STRING, [a + " " + b for a, b in tokenizer.merges])
    w.add("tokenizer.ggml.bos_token_id", UINT32, tokenizer.bos)
    w.add("tokenizer.ggml.eos_token_id", UINT32, tokenizer.eos)
    w.add("tokenizer.ggml.add_bos_token", BOOL, True)
    w.add("tokenizer.ggml.add_eos_token", BOOL, False)

    def t(x):
        return x.detach().float().cpu().numpy()
    w.add_tensor("token_embd.weight", t(model.token_embd.weight), f16)
    w.add_tensor("output_norm.weight", t(model.output_norm))
    if model.output is not None:
        w.add_tensor("output.weight", t(model.output.weight), f16)
    for i, layer in enumerate(model.layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", t(layer.attn_norm))
        w.add_tensor(p + "attn_q.weight", t(layer.wq.weight), f16)
        w.add_tensor(p + "attn_k.weight", t(layer.wk.weight), f16)
        w.add_tensor(p + "attn_v.weight", t(layer.wv.weight), f16)
        w.add_tensor(p + "attn_output.weight", t(layer.wo.weight), f16)
        w.add_tensor(p + "ffn_norm.weight", t(layer.ffn_norm))
        w.add_tensor(p + "ffn_gate.weight", t(layer.w_gate.weight), f16)
        w.add_tensor(p + "ffn_up.weight", t(layer.w_up.weight), f16)
        w.add_tensor(p + "ffn_down.weight", t(layer.w_down.weight), f16)
    w.write(path)


# Scalar metadata types: struct format by GGUF value type.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q",
            12: "<d"}


def read(path):
    """(metadata dict, tensors dict of numpy arrays) of a GGUF file with f32 / f16 tensors, such as
    export() writes; used to continue training from a committed model."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def value(kind):
        if kind == STRING:
            return string()
        if kind == ARRAY:
            element, n = take("<I"), take("<Q")
            return [value(element) for _ in range(n)]
        return take(_SCALARS[kind])

    if buf[:4] != GGUF_MAGIC:
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    _, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = string()
        metadata[key] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("<Q") for _ in range(take("<I"))]
        infos.append((name, dims, take("<I"), take("<Q")))
    data_start = _aligned(pos)
    tensors = {}
    for name, dims, kind, offset in infos:
        dtype = {GGML_F32: np.float32, GGML_F16: np.float16}[kind]
        count = int(np.prod(dims))
        a = np.frombuffer(buf, dtype=dtype, count=count, offset=data_start + offset)
        tensors[name] = a.reshape(list(reversed(dims))).astype(np.float32)
    return metadata, tensors
