// memoria-bench: prompt-processing and token-generation speed as llama-bench defines them.
//   ppN: N prompt tokens in one sequence, fed in max_batch_tokens chunks, from an empty cache.
//   tgN: N tokens decoded one at a time from an empty cache (after one warm-up token).
//   With --seqs S > 1, tgN also runs S sequences decoding together (tokens/s counts all of them).
//   With -d D > 0, both start from a cache already holding D tokens (llama-bench's -d: "@ dD"),
//   which is where attention's share of a step shows.
//   With --memory-refs R > 0, every decoding sequence attends to R references of --memory-k
//   entries per memory layer (the first half) and KV head, random f16 K/V in stable pages, with
//   its own tokens from position 128 (MEMORY.md "parallel" positions).
// Each test is repeated -r times; the median and spread are printed. --device cpu|cuda|auto picks
// the backend. The batch-1 decode bound (weight bytes per token / measured bandwidth) is printed
// too: on CUDA from a device copy, on the CPU from ReadBandwidthProbe with as many threads as the
// engine uses, measured right after each tgN repeat (this VM's bandwidth drifts by up to 30%
// within minutes, so each repeat is compared with its own measurement).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/read_bandwidth.h"
#include "client/cli/flags.h"
#include "engine/model/model.h"
#include "engine/quant/fp16.h"
#include "engine/quant/gemm.h"
#include "engine/util/status_macros.h"
#include "engine/util/thread_pool.h"
#ifdef MEMORIA_HAVE_CUDA
#include "engine/backend/cuda/cuda_backend.h"
#endif

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::vector<int32_t> RandomTokens(int32_t n, int32_t n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % n_vocab);
  return t;
}

// Feeds `tokens` to `seq` in max_batch_tokens chunks.
absl::Status Prefill(Model& model, SequenceId seq, std::span<const int32_t> tokens) {
  ForwardOutput out;
  const size_t chunk = model.options().max_batch_tokens;
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    SequenceInput in{seq, tokens.subspan(i, std::min(chunk, tokens.size() - i))};
    MEMORIA_RETURN_IF_ERROR(model.Forward(std::span<const SequenceInput>(&in, 1), &out));
  }
  return absl::OkStatus();
}

// Seconds to prefill n_prompt tokens into a sequence holding `depth` tokens.
absl::StatusOr<double> TimePrompt(Model& model, int32_t n_prompt, int32_t depth) {
  const std::vector<int32_t> context = RandomTokens(depth, model.config().n_vocab, 2);
  const std::vector<int32_t> tokens = RandomTokens(n_prompt, model.config().n_vocab, 1);
  MEMORIA_ASSIGN_OR_RETURN(SequenceId seq, model.CreateSequence());
  absl::Status st = Prefill(model, seq, context);
  const auto t0 = Clock::now();
  if (st.ok()) st = Prefill(model, seq, tokens);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  model.DestroySequence(seq);
  if (!st.ok()) return st;
  return s;
}

// Where memory sequences start: after the references' span of positions [0, kMemorySpan).
constexpr int32_t kMemorySpan = 128;

// `refs` references of `k` random f16 entries per memory layer and KV head, each reference one
// page (stable page_id), as the memory store hands them out.
std::shared_ptr<const MemoryView> RandomMemory(const ModelConfig& c, int32_t refs, int32_t k) {
  auto view = std::make_shared<MemoryView>(c.n_layers, c.n_kv_heads, MemoryRotation::kStoredPositions);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int32_t r = 0; r < refs; ++r) {
    for (int32_t l = 0; l < c.n_layers / 2; ++l) {
      for (int32_t g = 0; g < c.n_kv_heads; ++g) {
        auto page = std::make_shared<std::vector<uint16_t>>(2 * static_cast<size_t>(k) * c.head_dim + 2 * k);
        for (size_t i = 0; i < 2 * static_cast<size_t>(k) * c.head_dim; ++i) (*page)[i] = Fp32ToFp16(normal(rng));
        int32_t* positions = reinterpret_cast<int32_t*>(page->data() + 2 * static_cast<size_t>(k) * c.head_dim);
        for (int32_t m = 0; m < k; ++m) positions[m] = static_cast<int32_t>(rng() % kMemorySpan);
        MemoryEntries e;
        e.count = k;
        e.type = GgmlType::kF16;
        e.keys = page->data();
        e.values = page->data() + static_cast<size_t>(k) * c.head_dim;
        e.positions = positions;
        e.page_id = 1 + r;
        view->Add(l, g, e);
        view->KeepAlive(page);
      }
    }
  }
  return view;
}

// Seconds for n_seqs sequences, each holding `depth` tokens, to decode n_gen tokens each, one
// step per token.
absl::StatusOr<double> TimeGeneration(Model& model, int32_t n_gen, int32_t n_seqs, int32_t depth,
                                      std::shared_ptr<const MemoryView> memory) {
  const std::vector<int32_t> context = RandomTokens(depth, model.config().n_vocab, 2);
  std::vector<SequenceId> seqs;
  absl::Status prefilled = absl::OkStatus();
  for (int32_t s = 0; s < n_seqs && prefilled.ok(); ++s) {
    MEMORIA_ASSIGN_OR_RETURN(SequenceId id, model.CreateSequence(memory != nullptr ? kMemorySpan : 0));
    seqs.push_back(id);
    if (memory != nullptr) prefilled = model.SetMemory(id, memory);
    if (prefilled.ok()) prefilled = Prefill(model, id, context);
  }
  if (!prefilled.ok()) {
    for (SequenceId id : seqs) model.DestroySequence(id);
    return prefilled;
  }
  std::vector<int32_t> tokens(n_seqs, 1);
  std::vector<SequenceInput> inputs(n_seqs);
  ForwardOutput out;
  auto step = [&]() {
    for (int32_t s = 0; s < n_seqs; ++s) inputs[s] = {seqs[s], std::span<const int32_t>(&tokens[s], 1)};
    return model.Forward(inputs, &out);
  };
  absl::Status st = step();  // warm-up token, as llama-bench
  auto t0 = Clock::now();
  for (int32_t i = 0; i < n_gen && st.ok(); ++i) {
    st = step();
    for (int32_t s = 0; s < n_seqs && st.ok(); ++s) {
      const float* l = out.Logits(s);
      tokens[s] = static_cast<int32_t>(std::max_element(l, l + out.n_vocab) - l);
    }
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (SequenceId id : seqs) model.DestroySequence(id);
  if (!st.ok()) return st;
  return secs;
}

// Batch-1 decode reads every weight once per token (the embedding table only a row, unless it is
// also the output matrix).
double WeightBytesPerToken(const Model& model) {
  double bytes = 0;
  for (const GgufTensorInfo& t : model.file().tensors()) {
    if (t.name != "token_embd.weight" || model.config().tied_embeddings) bytes += static_cast<double>(t.size_bytes);
  }
  return bytes;
}

// On CUDA: the device's copy bandwidth (bytes read + written by a large device-to-device copy).
void PrintCudaDecodeBound(const Model& model) {
#ifdef MEMORIA_HAVE_CUDA
  const double weight_bytes = WeightBytesPerToken(model);
  constexpr size_t kBytes = size_t{1} << 30;
  void* a = nullptr;
  void* b = nullptr;
  if (cudaMalloc(&a, kBytes) != cudaSuccess || cudaMalloc(&b, kBytes) != cudaSuccess) {
    cudaGetLastError();
    cudaFree(a);
    return;
  }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> seconds;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(start);
    cudaMemcpy(i % 2 ? a : b, i % 2 ? b : a, kBytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i >= 2) seconds.push_back(ms / 1e3);
  }
  const double bandwidth = 2.0 * kBytes / Median(seconds);
  std::printf("copy bandwidth: %.0f GB/s (read + write); weights read per token: %.2f GB; "
              "batch-1 decode bound: %.1f t/s\n",
              bandwidth / 1e9, weight_bytes / 1e9, bandwidth / weight_bytes);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
#endif
}

absl::Status Main(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(cli::Flags flags,
                           cli::Flags::Parse(args, {"--model", "-m", "-p", "-n", "-d", "-t", "-r", "--seqs", "-b",
                                                    "--kv-type", "--device", "--memory-refs", "--memory-k"},
                                             {"--dequantize", "--no-graphs"}));
  std::string path = flags.String("--model", flags.String("-m"));
  if (path.empty()) return absl::InvalidArgumentError("--model is required");
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_prompt, flags.Int("-p", 512));
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_gen, flags.Int("-n", 128));
  MEMORIA_ASSIGN_OR_RETURN(int64_t depth, flags.Int("-d", 0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t threads, flags.Int("-t", 0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t repeats, flags.Int("-r", 5));
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_seqs, flags.Int("--seqs", 1));
  MEMORIA_ASSIGN_OR_RETURN(int64_t batch, flags.Int("-b", 512));
  MEMORIA_ASSIGN_OR_RETURN(int64_t memory_refs, flags.Int("--memory-refs", 0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t memory_k, flags.Int("--memory-k", 8));
  if (n_prompt < 0 || n_gen < 0 || depth < 0 || repeats < 1 || n_seqs < 1 || batch < 1 ||
      memory_refs < 0 || memory_k < 1) {
    return absl::InvalidArgumentError("-p, -n, -d, --memory-refs >= 0; -r, --seqs, -b, --memory-k >= 1");
  }
  ModelOptions options;
  MEMORIA_ASSIGN_OR_RETURN(options.backend.device, ParseDeviceKind(flags.String("--device", "auto")));
  options.backend.keep_quantized = !flags.Has("--dequantize");
  options.backend.cuda_graphs = !flags.Has("--no-graphs");
  options.backend.n_threads = static_cast<int32_t>(threads);
  options.max_batch_tokens = static_cast<int32_t>(std::max<int64_t>(batch, n_seqs));
  options.kv_cache_tokens =
      static_cast<int32_t>(std::max(depth + n_prompt, (depth + n_gen + 2) * n_seqs) + 64 * n_seqs);
  options.kv_type = flags.String("--kv-type", "f16") == "f32" ? GgmlType::kF32 : GgmlType::kF16;
  const auto load_start = Clock::now();
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(options, path));
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  const ModelConfig& c = model->config();
  std::printf("model: %s  arch=%s layers=%d dim=%d heads=%d/%d ff=%d vocab=%d\n", path.c_str(),
              c.arch_name.c_str(), c.n_layers, c.n_embd, c.n_heads, c.n_kv_heads, c.n_ff, c.n_vocab);
  std::printf("backend: %s  (loaded in %.1f s)\n", model->backend().Describe().c_str(), load_seconds);
  if (options.backend.device == DeviceKind::kCuda) PrintCudaDecodeBound(*model);
  std::printf("\n");
  std::printf("| %-16s | %12s | %10s |\n", "test", "t/s (median)", "spread");
  std::printf("|%s|%s|%s|\n", std::string(18, '-').c_str(), std::string(14, '-').c_str(),
              std::string(12, '-').c_str());
  auto report = [&](const std::string& name, int64_t tokens, const std::vector<double>& secs) {
    std::vector<double> tps;
    for (double s : secs) tps.push_back(tokens / s);
    auto [lo, hi] = std::minmax_element(tps.begin(), tps.end());
    std::printf("| %-16s | %12.2f | %4.1f-%4.1f |\n", name.c_str(), Median(tps), *lo, *hi);
    std::fflush(stdout);
  };
  const std::string depth_suffix = depth > 0 ? " @ d" + std::to_string(depth) : "";
  if (n_prompt > 0) {
    std::vector<double> secs;
    for (int64_t r = 0; r < repeats; ++r) {
      MEMORIA_ASSIGN_OR_RETURN(double s, TimePrompt(*model, static_cast<int32_t>(n_prompt),
                                                     static_cast<int32_t>(depth)));
      secs.push_back(s);
    }
    report("pp" + std::to_string(n_prompt) + depth_suffix, n_prompt, secs);
  }
  std::shared_ptr<const MemoryView> memory;
  if (memory_refs > 0) memory = RandomMemory(c, static_cast<int32_t>(memory_refs), static_cast<int32_t>(memory_k));
  if (n_gen > 0) {
    // The CPU bound applies to one sequence without memories or depth: then a step reads the
    // weights and little else.
    const int cpu_threads = threads > 0 ? static_cast<int>(threads) : DefaultThreadCount();
    std::unique_ptr<ReadBandwidthProbe> bandwidth;
    if (options.backend.device == DeviceKind::kCpu && n_seqs == 1 && memory == nullptr &&
        depth == 0) {
      bandwidth = std::make_unique<ReadBandwidthProbe>(cpu_threads);
    }
    std::vector<double> secs, bound_fractions, bandwidths;
    const double weight_bytes = WeightBytesPerToken(*model);
    for (int64_t r = 0; r < repeats; ++r) {
      MEMORIA_ASSIGN_OR_RETURN(double s, TimeGeneration(*model, static_cast<int32_t>(n_gen),
                                                         static_cast<int32_t>(n_seqs),
                                                         static_cast<int32_t>(depth), memory));
      secs.push_back(s);
      if (bandwidth != nullptr) {
        bandwidths.push_back(bandwidth->Measure());
        bound_fractions.push_back((n_gen / s) / (bandwidths.back() / weight_bytes));
      }
    }
    std::string name = "tg" + std::to_string(n_gen);
    if (n_seqs > 1) name += "x" + std::to_string(n_seqs);
    if (memory != nullptr) name += "+mem" + std::to_string(memory_refs);
    name += depth_suffix;
    report(name, n_gen * n_seqs, secs);
    if (bandwidth != nullptr) {
      auto [lo, hi] = std::minmax_element(bound_fractions.begin(), bound_fractions.end());
      std::printf("\nweights read per token: %.3f GB; read bandwidth after each %s (%d threads): "
                  "median %.1f GB/s; decode bound: %.1f t/s\n%s / bound: median %.2f (%.2f-%.2f)\n",
                  weight_bytes / 1e9, name.c_str(), cpu_threads,
                  Median(bandwidths) / 1e9, Median(bandwidths) / weight_bytes, name.c_str(),
                  Median(bound_fractions), *lo, *hi);
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  absl::Status st = memoria::Main(std::vector<std::string>(argv + 1, argv + argc));
  if (!st.ok()) {
    std::fprintf(stderr, "memoria-bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
