#include "server/grpc/generation_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"
#include "server/grpc/status_util.h"
#include "server/request_log.h"
#include "server/scheduler/prompt.h"

namespace memoria {
namespace {

namespace v1 = memoria::v1;

constexpr int32_t kDefaultMaxTokens = 128;
// How often a waiting handler looks at its client (cancel, deadline).
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

grpc::Status NotReady() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading");
}

void FillTokens(const Tokenizer& tokenizer, const std::vector<SampledToken>& tokens,
                v1::GenerateResponse* out) {
  for (const SampledToken& t : tokens) {
    v1::GeneratedToken* g = out->add_tokens();
    g->set_id(t.id);
    g->set_logprob(t.logprob);
    for (const auto& [id, logprob] : t.top) {
      v1::TokenLogprob* alt = g->add_top();
      alt->set_id(id);
      alt->set_text(tokenizer.TokenToPiece(id, true));
      alt->set_logprob(logprob);
    }
  }
}

}  // namespace

absl::StatusOr<GenerationRequest> FromProto(const Model& model, const v1::GenerateRequest& in) {
  GenerationRequest r;
  r.id = in.request_id().empty() ? NewRequestId() : in.request_id();
  switch (in.input_case()) {
    case v1::GenerateRequest::kPrompt: {
      MEMORIA_ASSIGN_OR_RETURN(r.prompt, PromptFromText(model, in.prompt()));
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      std::vector<int32_t> ids(in.token_ids().ids().begin(), in.token_ids().ids().end());
      MEMORIA_ASSIGN_OR_RETURN(r.prompt, PromptFromIds(model, std::move(ids)));
      break;
    }
    case v1::GenerateRequest::kChat: {
      std::vector<ChatMessage> messages;
      for (const v1::ChatMessage& m : in.chat().messages()) {
        messages.push_back(ChatMessage{m.role(), m.content()});
      }
      MEMORIA_ASSIGN_OR_RETURN(r.prompt, PromptFromChat(model, messages));
      break;
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("one of prompt, token_ids or chat is required");
  }
  const v1::SamplingOptions& s = in.sampling();
  if (s.has_temperature()) r.sampling.temperature = s.temperature();
  r.sampling.top_k = s.top_k();
  if (s.has_top_p()) r.sampling.top_p = s.top_p();
  r.sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) r.sampling.repetition_penalty = s.repetition_penalty();
  r.sampling.frequency_penalty = s.frequency_penalty();
  r.sampling.presence_penalty = s.presence_penalty();
  if (s.has_seed()) r.sampling.seed = s.seed();
  r.sampling.top_logprobs = s.logprobs();
  r.sampling.logprobs = s.logprobs() > 0;  // token ids alone need no log-softmax
  if (s.max_tokens() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_tokens must not be negative, got ", s.max_tokens()));
  }
  r.max_tokens = s.max_tokens() == 0 ? kDefaultMaxTokens : s.max_tokens();
  for (const std::string& stop : s.stop()) {
    if (stop.empty()) return absl::InvalidArgumentError("sampling.stop has an empty string");
    r.stop_strings.push_back(stop);
  }
  const int32_t n_vocab = model.config().n_vocab;
  for (int32_t t : s.stop_token_ids()) {
    if (t < 0 || t >= n_vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.stop_token_ids has ", t, ", outside the vocabulary"));
    }
    r.stop_tokens.push_back(t);
  }
  r.ignore_eos = s.ignore_eos();

  const v1::MemoryOptions& m = in.memory();
  if (m.has_enabled()) r.memory.enabled = m.enabled();
  r.memory.collections.assign(m.collections().begin(), m.collections().end());
  if (m.has_references()) r.memory.references = m.references();
  if (m.has_retrieve_every()) r.memory.retrieve_every = m.retrieve_every();
  if (m.has_min_score()) r.memory.min_score = m.min_score();
  if (m.has_score_gap()) r.memory.score_gap = m.score_gap();
  return r;
}

grpc::Status GenerationService::Generate(grpc::ServerContext* context,
                                         const v1::GenerateRequest* request,
                                         grpc::ServerWriter<v1::GenerateResponse>* writer) {
  if (!state_->IsReady()) return NotReady();
  ServerMetrics& metrics = *state_->metrics;
  absl::StatusOr<GenerationRequest> converted = FromProto(*state_->model, *request);
  if (!converted.ok()) {
    metrics.requests_invalid->Increment();
    return ToGrpcStatus(converted.status());
  }
  const std::string id = converted->id;
  const bool want_tokens = request->sampling().return_token_ids() || request->sampling().logprobs() > 0;
  absl::StatusOr<std::shared_ptr<GenerationStream>> stream =
      state_->scheduler->Submit(*std::move(converted));
  if (!stream.ok()) {
    if (stream.status().code() == absl::StatusCode::kInvalidArgument) {
      metrics.requests_invalid->Increment();
    }
    LogEvent("generate_refused", {{"request_id", id}, {"error", stream.status().ToString()}});
    return ToGrpcStatus(stream.status());
  }

  bool first = true;
  for (;;) {
    if (context->IsCancelled()) {
      (*stream)->Cancel();
      LogEvent("generate_cancelled", {{"request_id", id}});
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
    }
    GenerationEvent event;
    if (!(*stream)->Next(&event, kPollInterval)) continue;
    if (event.finish.has_value() && !event.finish->status.ok()) {
      LogEvent("generate_failed", {{"request_id", id}, {"error", event.finish->status.ToString()}});
      return ToGrpcStatus(event.finish->status);
    }
    v1::GenerateResponse response;
    if (first) response.set_request_id(id);
    first = false;
    response.set_text(std::move(event.text));
    if (want_tokens) FillTokens(state_->model->tokenizer(), event.tokens, &response);
    if (event.retrieval.has_value()) {
      v1::Retrieval* r = response.mutable_retrieval();
      r->set_generated_tokens(event.retrieval->generated_tokens);
      r->set_latency_ms(event.retrieval->latency_ms);
      for (const Citation& c : event.retrieval->references) {
        v1::Citation* out = r->add_references();
        out->set_document_id(c.document_id);
        out->set_reference_id(c.reference_id);
        out->set_score(c.score);
      }
    }
    if (event.finish.has_value()) {
      const FinishEvent& f = *event.finish;
      v1::Finished* done = response.mutable_finished();
      done->set_reason(f.reason == FinishReason::kStop ? v1::FINISH_REASON_STOP
                                                       : v1::FINISH_REASON_LENGTH);
      done->mutable_usage()->set_prompt_tokens(f.prompt_tokens);
      done->mutable_usage()->set_completion_tokens(f.completion_tokens);
      v1::Timings* t = done->mutable_timings();
      t->set_queue_ms(f.queue_ms);
      t->set_ttft_ms(f.ttft_ms);
      t->set_decode_tokens_per_second(f.decode_tokens_per_second);
      t->set_total_ms(f.total_ms);
      writer->Write(response);
      LogEvent("generate_done",
               {{"request_id", id},
                {"prompt_tokens", absl::StrCat(f.prompt_tokens)},
                {"completion_tokens", absl::StrCat(f.completion_tokens)},
                {"ttft_ms", absl::StrCat(f.ttft_ms)},
                {"total_ms", absl::StrCat(f.total_ms)}});
      return grpc::Status::OK;
    }
    if (!writer->Write(response)) {
      (*stream)->Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
  }
}

grpc::Status GenerationService::Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* request,
                                         v1::TokenizeResponse* response) {
  if (!state_->IsReady()) return NotReady();
  if (absl::Status s = CheckUtf8("text", request->text()); !s.ok()) return ToGrpcStatus(s);
  const Tokenizer& tokenizer = state_->model->tokenizer();
  for (int32_t id : tokenizer.Encode(request->text(), request->add_special(),
                                     request->parse_special())) {
    response->add_ids(id);
    response->add_pieces(tokenizer.TokenToPiece(id, true));
  }
  return grpc::Status::OK;
}

grpc::Status GenerationService::ModelInfo(grpc::ServerContext*, const v1::ModelInfoRequest*,
                                          v1::ModelInfoResponse* response) {
  if (!state_->IsReady()) return NotReady();
  const Model& model = *state_->model;
  const ModelConfig& c = model.config();
  response->set_description(c.Describe());
  response->set_architecture(c.arch_name);
  response->set_n_layers(c.n_layers);
  response->set_n_embd(c.n_embd);
  response->set_n_heads(c.n_heads);
  response->set_n_kv_heads(c.n_kv_heads);
  response->set_n_vocab(c.n_vocab);
  response->set_context_length(c.context_length);
  if (absl::StatusOr<ChatTemplateKind> kind = model.chat_template(); kind.ok()) {
    response->set_chat_template(ChatTemplateName(*kind));
  }
  response->set_device(state_->model->backend().Describe());
  response->set_memory_enabled(state_->store != nullptr);
  if (state_->compiler != nullptr) {
    const CompilerOptions& o = *state_->compiler;
    response->set_reference_tokens(o.reference_tokens);
    response->set_kept_tokens(o.dense ? 0 : o.kept_tokens);
    for (int32_t l : o.memory_layers) response->add_memory_layers(l);
    response->set_min_score(state_->scheduler->default_min_score());
    response->set_score_gap(state_->scheduler->default_score_gap());
  }
  return grpc::Status::OK;
}

}  // namespace memoria
