// llama.cpp's side of tools/crosscheck_llama_cpp.py when both engines should run attention at
// full precision. ../shared/peer's peer_greedy uses llama.cpp's context defaults (f16 KV cache,
// flash attention, which accumulates values in f16 on CPU); this harness lets the KV cache be f32
// with flash attention off, so llama.cpp's attention is f32 end to end, as Memoria's is with
// `--kv-type f32`, and only the engines' summation orders differ.
//
// Built outside CMake against the peer's libllama (see the script). Same output as peer_greedy:
//   llama_cpp_greedy MODEL PROMPT N_PREDICT LOGITS_OUT f16|f32 [stepwise]
//   -> "prompt: ids" and "gen: ids" lines; LOGITS_OUT gets the last prompt position's logits.
// "stepwise" feeds the prompt one token at a time (llama.cpp's decode kernels instead of its
// batched ones): how far llama.cpp agrees with itself when only its summation order changes.
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

int main(int argc, char** argv) {
  if (argc < 6 || argc > 7 || (strcmp(argv[5], "f16") != 0 && strcmp(argv[5], "f32") != 0) ||
      (argc == 7 && strcmp(argv[6], "stepwise") != 0)) {
    fprintf(stderr, "usage: %s MODEL PROMPT N_PREDICT LOGITS_OUT f16|f32 [stepwise]\n", argv[0]);
    return 2;
  }
  const bool stepwise = argc == 7;
  const bool full_precision = strcmp(argv[5], "f32") == 0;
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (model == nullptr) {
    fprintf(stderr, "cannot load %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const std::string text = argv[2];
  const int n_prompt = -llama_tokenize(vocab, text.data(), text.size(), nullptr, 0, true, false);
  std::vector<llama_token> prompt(n_prompt);
  llama_tokenize(vocab, text.data(), text.size(), prompt.data(), n_prompt, true, false);
  const int n_predict = atoi(argv[3]);

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = n_prompt + n_predict + 8;
  cp.n_batch = cp.n_ctx;
  cp.n_threads = cp.n_threads_batch = 2;
  if (full_precision) {
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  }
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) {
    fprintf(stderr, "cannot create a context\n");
    return 1;
  }
  printf("prompt:");
  for (llama_token t : prompt) printf(" %d", t);
  printf("\ngen:");
  const int n_vocab = llama_vocab_n_tokens(vocab);
  int fed = stepwise ? n_prompt - 1 : 0;
  for (int i = 0; i < fed; ++i) {
    if (llama_decode(ctx, llama_batch_get_one(&prompt[i], 1)) != 0) {
      fprintf(stderr, "decode failed\n");
      return 1;
    }
  }
  llama_batch batch = llama_batch_get_one(prompt.data() + fed, n_prompt - fed);
  llama_token next = 0;
  for (int i = 0; i < n_predict; ++i) {
    if (llama_decode(ctx, batch) != 0) {
      fprintf(stderr, "decode failed\n");
      return 1;
    }
    const float* logits = llama_get_logits_ith(ctx, -1);
    if (i == 0) {
      FILE* out = fopen(argv[4], "wb");
      if (out == nullptr || fwrite(logits, sizeof(float), n_vocab, out) != size_t(n_vocab)) return 1;
      fclose(out);
    }
    next = 0;
    for (int v = 1; v < n_vocab; ++v) {
      if (logits[v] > logits[next]) next = v;
    }
    printf(" %d", next);
    batch = llama_batch_get_one(&next, 1);
  }
  printf("\n");
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
