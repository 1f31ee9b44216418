#!/usr/bin/env python3
"""Cross-checks Memoria against llama.cpp on random-weight models (see docs/crosscheck.md).

For each architecture and weight type it makes a model twice -- with Memoria's writer
(`memoria make-model`) and with llama.cpp's own gguf-py (+ llama-quantize) -- runs a greedy
continuation in both engines, and compares prompt ids, generated ids and last-prompt logits,
twice: with llama.cpp's defaults (f16 KV cache, flash attention; Memoria --kv-type f16) and with
attention at full precision in both (f32 KV cache, flash attention off; --kv-type f32).
llama.cpp runs through tools/llama_cpp_greedy.cpp, built here against the peer's libllama
(../shared/peer/setup.sh; PEER_DIR, default /tmp/llama-peer). Exit status 1 when any case disagrees.
"""
import argparse
import array
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def parse_ids(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("prompt:") or line.startswith("gen:"):
            key, _, rest = line.partition(":")
            out[key] = [int(x) for x in rest.split()]
    return out


def read_f32(path):
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a


def build_peer_harness(peer, work):
    """Compiles tools/llama_cpp_greedy.cpp against the peer's libllama (once per source change)."""
    src = os.path.join(HERE, "llama_cpp_greedy.cpp")
    exe = os.path.join(work, "llama_cpp_greedy")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        lib = os.path.join(peer, "build", "bin")
        run(["g++", "-O2", "-std=c++17", src, "-I" + os.path.join(peer, "src", "include"),
             "-I" + os.path.join(peer, "src", "ggml", "include"), "-L" + lib, "-lllama", "-lggml",
             "-lggml-base", "-Wl,-rpath," + lib, "-o", exe])
    return exe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", default=os.environ.get("PEER_DIR", "/tmp/llama-peer"))
    ap.add_argument("--shared", default=os.environ.get("MEMORIA_SHARED_DIR", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--memoria", default=os.path.join(ROOT, "build", "client", "memoria"))
    ap.add_argument("--work", default="/tmp/memoria-crosscheck")
    ap.add_argument("-n", type=int, default=48)
    ap.add_argument("--prompt", default="The quick brown fox jumps over the lazy dog. Memory is")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    peer_greedy = build_peer_harness(a.peer, a.work)
    quantize = os.path.join(a.peer, "build", "bin", "llama-quantize")
    shape = ["--layers", "4", "--dim", "256", "--heads", "4", "--kv-heads", "2", "--ff", "768"]
    vocab = {"llama": "ggml-vocab-llama-spm.gguf", "qwen2": "ggml-vocab-llama-bpe.gguf"}
    failures = 0
    print(f"| writer | arch | type | KV cache | prompt ids | greedy {a.n} ids | first diff | "
          "max |dlogit| / max |logit| |")
    print("|---|---|---|---|---|---|---|---|")
    for arch in ("llama", "qwen2"):
        v = os.path.join(a.shared, "vocab", vocab[arch])
        for writer in ("memoria", "llama.cpp"):
            for typ in ("f32", "f16", "q8_0", "q4_k_m"):
                model = os.path.join(a.work, f"{writer}-{arch}-{typ}.gguf")
                if writer == "memoria":
                    run([a.memoria, "make-model", "--vocab", v, "--arch", arch, "--type", typ, "--seed", "3",
                         "-o", model] + shape)
                else:
                    base = os.path.join(a.work, f"{writer}-{arch}-{'f16' if typ == 'f16' else 'f32'}.gguf")
                    if not os.path.exists(base):
                        env = dict(os.environ, PYTHONPATH=os.path.join(a.peer, "gguf-py"))
                        run(["/usr/bin/python3", os.path.join(a.shared, "peer", "make_peer_model.py"), v, base,
                             "--arch", arch, "--dtype", "f16" if typ == "f16" else "f32", "--seed", "3"]
                            + shape, env=env)
                    if typ in ("q8_0", "q4_k_m"):
                        run([quantize, base, model, typ.upper()])
                    else:
                        model = base
                for kv in ("f16", "f32"):
                    peer_logits = f"{model}.{kv}.peer.f32"
                    ours_logits = f"{model}.{kv}.memoria.f32"
                    peer = parse_ids(run([peer_greedy, model, a.prompt, str(a.n), peer_logits, kv]))
                    ours = parse_ids(run([a.memoria, "run", "--model", model, "--prompt", a.prompt, "-n",
                                          str(a.n), "--print-ids", "--dump-logits", ours_logits, "-t", "2",
                                          "--kv-type", kv]))
                    pl, ol = read_f32(peer_logits), read_f32(ours_logits)
                    err = max(abs(x - y) for x, y in zip(pl, ol)) / max(max(abs(x) for x in pl), 1e-9)
                    same_prompt = peer["prompt"] == ours["prompt"]
                    first_diff = next((i for i, (x, y) in enumerate(zip(peer["gen"], ours["gen"])) if x != y),
                                      None)
                    same_gen = first_diff is None and len(peer["gen"]) == len(ours["gen"])
                    ok = same_prompt and same_gen and len(pl) == len(ol) and err < 0.02
                    failures += not ok
                    print(f"| {writer} | {arch} | {typ} | {kv} | {'same' if same_prompt else 'DIFFER'} | "
                          f"{'same' if same_gen else 'DIFFER'} | {'-' if first_diff is None else first_diff} | "
                          f"{err:.2e} |", flush=True)
    print(f"\n{failures} case(s) disagree" if failures else "\nall cases agree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
