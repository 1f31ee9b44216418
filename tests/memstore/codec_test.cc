#include "memstore/codec.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/quant/fp16.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<VectorCodec> MakeCodec(CodecOptions options) {
  auto codec = VectorCodec::Create(options);
  EXPECT_TRUE(codec.ok()) << codec.status();
  return codec.ok() ? std::move(*codec) : nullptr;
}

CodecOptions Options(CodecKind kind, int32_t dim) {
  CodecOptions o;
  o.kind = kind;
  o.dim = dim;
  return o;
}

std::vector<float> Gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

std::vector<float> RoundTrip(const VectorCodec& codec, const std::vector<float>& x) {
  const int64_t n = x.size() / codec.options().dim;
  std::string bytes;
  codec.Encode(x, &bytes);
  EXPECT_EQ(bytes.size(), n * codec.EncodedBytes());
  std::vector<float> y(x.size());
  absl::Status s = codec.Decode(bytes, n, y.data());
  EXPECT_TRUE(s.ok()) << s;
  return y;
}

// Sum of squared errors over sum of squares.
double RelativeError(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(x[i]) * x[i];
  }
  return num / den;
}

TEST(CodecNameTest, ParseRoundTrips) {
  for (CodecKind kind : {CodecKind::kF32, CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4,
                         CodecKind::kPq}) {
    auto parsed = ParseCodec(CodecName(kind));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_EQ(ParseCodec("q8_0").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCodec("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CodecCreateTest, RejectsBadOptionsNamingTheField) {
  struct Case {
    CodecOptions options;
    const char* field;
  };
  CodecOptions zero_dim = Options(CodecKind::kF16, 0);
  CodecOptions odd_group = Options(CodecKind::kInt4, 64);
  odd_group.int4_group = 7;
  CodecOptions group_not_dividing = Options(CodecKind::kInt4, 64);
  group_not_dividing.int4_group = 48;
  CodecOptions zero_group = Options(CodecKind::kInt4, 64);
  zero_group.int4_group = 0;
  CodecOptions subvectors = Options(CodecKind::kPq, 64);
  subvectors.pq_subvectors = 7;
  CodecOptions zero_bits = Options(CodecKind::kPq, 64);
  zero_bits.pq_bits = 0;
  CodecOptions many_bits = Options(CodecKind::kPq, 64);
  many_bits.pq_bits = 17;
  CodecOptions bad_kind = Options(static_cast<CodecKind>(9), 64);
  for (const Case& c : {Case{zero_dim, "dim"}, Case{odd_group, "int4_group"},
                        Case{group_not_dividing, "int4_group"}, Case{zero_group, "int4_group"},
                        Case{subvectors, "pq_subvectors"}, Case{zero_bits, "pq_bits"},
                        Case{many_bits, "pq_bits"}, Case{bad_kind, "kind"}}) {
    auto codec = VectorCodec::Create(c.options);
    EXPECT_EQ(codec.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(codec.status().message()), HasSubstr(c.field));
  }
}

TEST(CodecCreateTest, IgnoresFieldsOfOtherKinds) {
  CodecOptions o = Options(CodecKind::kInt8, 48);
  o.int4_group = 7;
  o.pq_subvectors = 5;
  o.pq_bits = 99;
  EXPECT_TRUE(VectorCodec::Create(o).ok());
}

TEST(CodecTest, EncodedBytesPerKind) {
  EXPECT_EQ(MakeCodec(Options(CodecKind::kF32, 64))->EncodedBytes(), 256u);
  EXPECT_EQ(MakeCodec(Options(CodecKind::kF16, 64))->EncodedBytes(), 128u);
  EXPECT_EQ(MakeCodec(Options(CodecKind::kInt8, 64))->EncodedBytes(), 68u);
  EXPECT_EQ(MakeCodec(Options(CodecKind::kInt4, 64))->EncodedBytes(), 2u * (2 + 16));
  CodecOptions pq = Options(CodecKind::kPq, 64);
  pq.pq_subvectors = 16;
  pq.pq_bits = 8;
  EXPECT_EQ(MakeCodec(pq)->EncodedBytes(), 16u);
  pq.pq_bits = 6;  // 96 bits
  EXPECT_EQ(MakeCodec(pq)->EncodedBytes(), 12u);
}

TEST(CodecTest, F32IsExact) {
  auto codec = MakeCodec(Options(CodecKind::kF32, 16));
  std::vector<float> x = Gaussian(16 * 5, 1, 100.0f);
  x[3] = -0.0f;
  x[4] = 3e38f;
  x[5] = 1e-42f;  // subnormal
  std::vector<float> y = RoundTrip(*codec, x);
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)));
  EXPECT_TRUE(codec->SerializeState().empty());
  EXPECT_FALSE(codec->NeedsTraining());
}

TEST(CodecTest, F16WithinHalfUlp) {
  auto codec = MakeCodec(Options(CodecKind::kF16, 64));
  std::vector<float> x = Gaussian(64 * 20, 2, 3.0f);
  std::vector<float> y = RoundTrip(*codec, x);
  for (size_t i = 0; i < x.size(); ++i) {
    // Round to nearest with an 11-bit significand; absolute slack for the subnormal range.
    EXPECT_NEAR(y[i], x[i], std::fabs(x[i]) * 0x1p-11f + 0x1p-25f) << i;
    EXPECT_EQ(y[i], Fp16ToFp32(Fp32ToFp16(x[i])));
  }
}

TEST(CodecTest, Int8WithinHalfStep) {
  const int32_t dim = 64;
  auto codec = MakeCodec(Options(CodecKind::kInt8, dim));
  std::vector<float> x = Gaussian(dim * 50, 3, 2.0f);
  x[7] = 40.0f;  // an outlier channel sets the step of its vector
  std::vector<float> y = RoundTrip(*codec, x);
  for (int v = 0; v < 50; ++v) {
    float amax = 0;
    for (int i = 0; i < dim; ++i) amax = std::max(amax, std::fabs(x[v * dim + i]));
    const float step = amax / 127.0f;
    for (int i = 0; i < dim; ++i) {
      EXPECT_LE(std::fabs(y[v * dim + i] - x[v * dim + i]), step * 0.5f * (1 + 1e-5f) + 1e-12f)
          << v << "," << i;
    }
  }
  EXPECT_LT(RelativeError(x, y), 1e-3);
}

TEST(CodecTest, Int4WithinHalfStepOfItsGroup) {
  const int32_t dim = 64;
  CodecOptions o = Options(CodecKind::kInt4, dim);
  o.int4_group = 16;
  auto codec = MakeCodec(o);
  std::vector<float> x = Gaussian(dim * 50, 4, 0.5f);
  std::vector<float> y = RoundTrip(*codec, x);
  for (size_t g = 0; g < x.size() / 16; ++g) {
    float amax = 0;
    for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(x[g * 16 + i]));
    // The scale is stored as fp16, so the step is amax / 7 within a relative 2^-11.
    const float step = amax / 7.0f * (1 + 0x1p-10f);
    for (int i = 0; i < 16; ++i) {
      EXPECT_LE(std::fabs(y[g * 16 + i] - x[g * 16 + i]), step * 0.5f + 1e-7f) << g << "," << i;
    }
  }
  EXPECT_LT(RelativeError(x, y), 0.02);
}

TEST(CodecTest, ZeroVectorsStayZero) {
  for (CodecKind kind : {CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4}) {
    auto codec = MakeCodec(Options(kind, 32));
    std::vector<float> x(64, 0.0f);
    EXPECT_EQ(RoundTrip(*codec, x), x) << CodecName(kind);
  }
}

TEST(CodecTest, NonFiniteInputsEncodeToFiniteValues) {
  for (CodecKind kind : {CodecKind::kF32, CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4}) {
    auto codec = MakeCodec(Options(kind, 32));
    std::vector<float> x = Gaussian(32, 5);
    x[0] = std::numeric_limits<float>::quiet_NaN();
    x[1] = std::numeric_limits<float>::infinity();
    x[2] = -std::numeric_limits<float>::infinity();
    x[3] = 1e6f;  // beyond fp16
    std::vector<float> y = RoundTrip(*codec, x);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_TRUE(std::isfinite(y[i])) << CodecName(kind);
    EXPECT_EQ(y[0], 0.0f) << CodecName(kind);
    EXPECT_GT(y[1], 0.0f) << CodecName(kind);
    EXPECT_LT(y[2], 0.0f) << CodecName(kind);
  }
}

TEST(CodecDecodeTest, WrongSizeIsDataLoss) {
  for (CodecKind kind : {CodecKind::kF32, CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4}) {
    auto codec = MakeCodec(Options(kind, 32));
    std::string bytes;
    codec->Encode(Gaussian(32 * 3, 6), &bytes);
    std::vector<float> out(32 * 4);
    EXPECT_TRUE(codec->Decode(bytes, 3, out.data()).ok());
    EXPECT_EQ(codec->Decode(bytes, 4, out.data()).code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(codec->Decode(bytes, 2, out.data()).code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(codec->Decode(bytes, -1, out.data()).code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(codec->Decode(std::string_view(bytes).substr(1), 3, out.data()).code(),
              absl::StatusCode::kDataLoss);
    EXPECT_TRUE(codec->Decode({}, 0, out.data()).ok());
  }
}

TEST(CodecDecodeTest, NonFiniteScalesAndElementsAreDataLoss) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> out(32 * 2);
  {
    auto codec = MakeCodec(Options(CodecKind::kInt8, 32));
    for (float bad : {nan, inf}) {
      std::string bytes;
      codec->Encode(Gaussian(64, 7), &bytes);
      std::memcpy(bytes.data() + codec->EncodedBytes(), &bad, sizeof bad);  // second scale
      absl::Status s = codec->Decode(bytes, 2, out.data());
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
      EXPECT_THAT(std::string(s.message()), HasSubstr("scale in vector 1"));
    }
  }
  {
    auto codec = MakeCodec(Options(CodecKind::kInt4, 32));  // one group of 32 per vector
    for (uint16_t bad : {uint16_t{0x7E00}, uint16_t{0x7C00}, uint16_t{0xFC00}}) {
      std::string bytes;
      codec->Encode(Gaussian(64, 8), &bytes);
      std::memcpy(bytes.data() + codec->EncodedBytes(), &bad, sizeof bad);
      EXPECT_EQ(codec->Decode(bytes, 2, out.data()).code(), absl::StatusCode::kDataLoss);
    }
  }
  {
    auto codec = MakeCodec(Options(CodecKind::kF16, 32));
    std::string bytes;
    codec->Encode(Gaussian(64, 9), &bytes);
    const uint16_t nan_half = 0x7E00;
    std::memcpy(bytes.data() + 10, &nan_half, sizeof nan_half);
    EXPECT_EQ(codec->Decode(bytes, 2, out.data()).code(), absl::StatusCode::kDataLoss);
  }
  {
    auto codec = MakeCodec(Options(CodecKind::kF32, 32));
    std::string bytes;
    codec->Encode(Gaussian(64, 10), &bytes);
    std::memcpy(bytes.data() + 40, &nan, sizeof nan);
    EXPECT_EQ(codec->Decode(bytes, 2, out.data()).code(), absl::StatusCode::kDataLoss);
  }
}

TEST(CodecDecodeTest, Int4DecodesEveryNibble) {
  CodecOptions o = Options(CodecKind::kInt4, 4);
  o.int4_group = 4;
  auto codec = MakeCodec(o);
  const uint16_t half = Fp32ToFp16(0.5f);
  std::string bytes(reinterpret_cast<const char*>(&half), 2);
  bytes.push_back(static_cast<char>(0xF0));  // elements 0 (-8) and 1 (+7)
  bytes.push_back(static_cast<char>(0x98));  // elements 2 (0) and 3 (+1)
  float out[4];
  ASSERT_TRUE(codec->Decode(bytes, 1, out).ok());
  EXPECT_EQ(out[0], -4.0f);
  EXPECT_EQ(out[1], 3.5f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[3], 0.5f);
}

TEST(CodecTest, StatelessCodecsRefuseAState) {
  for (CodecKind kind : {CodecKind::kF32, CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4}) {
    auto codec = MakeCodec(Options(kind, 32));
    EXPECT_TRUE(codec->LoadState("").ok());
    EXPECT_EQ(codec->LoadState("centroids").code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(CodecDeathTest, EncodingARaggedArrayAborts) {
  auto codec = MakeCodec(Options(CodecKind::kInt8, 32));
  std::string out;
  EXPECT_DEATH(codec->Encode(Gaussian(33, 1), &out), "whole number of vectors");
}

// --- Product quantization.

constexpr int32_t kPqDim = 32;

CodecOptions PqOptions(int32_t subvectors, int32_t bits) {
  CodecOptions o = Options(CodecKind::kPq, kPqDim);
  o.pq_subvectors = subvectors;
  o.pq_bits = bits;
  return o;
}

// Points around a few fixed centers: what a trained codebook can capture and random data cannot
// teach.
std::vector<float> Clustered(size_t n, uint32_t seed) {
  std::vector<float> centers = Gaussian(12 * kPqDim, 1234, 3.0f);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, 11);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  std::vector<float> x(n * kPqDim);
  for (size_t v = 0; v < n; ++v) {
    const int c = pick(rng);
    for (int i = 0; i < kPqDim; ++i) x[v * kPqDim + i] = centers[c * kPqDim + i] + noise(rng);
  }
  return x;
}

TEST(PqCodecTest, NeedsTrainingBeforeDecoding) {
  auto codec = MakeCodec(PqOptions(4, 4));
  EXPECT_TRUE(codec->NeedsTraining());
  EXPECT_TRUE(codec->SerializeState().empty());
  std::string bytes(codec->EncodedBytes(), '\0');
  float out[kPqDim];
  EXPECT_EQ(codec->Decode(bytes, 1, out).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PqCodecDeathTest, EncodingBeforeTrainingAborts) {
  auto codec = MakeCodec(PqOptions(4, 4));
  std::string out;
  EXPECT_DEATH(codec->Encode(Gaussian(kPqDim, 1), &out), "not trained");
}

TEST(PqCodecTest, RejectsBadTrainingData) {
  auto codec = MakeCodec(PqOptions(4, 6));  // 64 centroids per sub-quantizer
  EXPECT_EQ(codec->Train(Gaussian(63 * kPqDim, 11)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(codec->Train(Gaussian(100 * kPqDim + 1, 11)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> x = Gaussian(100 * kPqDim, 11);
  x[17] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(codec->Train(x).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(codec->SerializeState().empty());
}

TEST(PqCodecTest, TrainingOnTheDataBeatsTrainingOnNoise) {
  const std::vector<float> train = Clustered(2048, 12);
  const std::vector<float> held_out = Clustered(256, 13);
  auto fitted = MakeCodec(PqOptions(8, 6));
  auto unfitted = MakeCodec(PqOptions(8, 6));
  ASSERT_TRUE(fitted->Train(train).ok());
  ASSERT_TRUE(unfitted->Train(Gaussian(2048 * kPqDim, 14, 3.0f)).ok());
  const double fitted_error = RelativeError(held_out, RoundTrip(*fitted, held_out));
  const double unfitted_error = RelativeError(held_out, RoundTrip(*unfitted, held_out));
  EXPECT_LT(fitted_error, 0.01);
  EXPECT_LT(fitted_error * 5, unfitted_error);

  // Encoding and decoding are deterministic.
  std::string a, b;
  fitted->Encode(held_out, &a);
  fitted->Encode(held_out, &b);
  EXPECT_EQ(a, b);
  EXPECT_EQ(RoundTrip(*fitted, held_out), RoundTrip(*fitted, held_out));
}

TEST(PqCodecTest, StateRoundTripGivesIdenticalCodes) {
  for (int32_t bits : {8, 5, 12}) {
    const std::vector<float> train = Clustered(bits == 12 ? 4096 : 1024, 15);
    auto trained = MakeCodec(PqOptions(4, bits));
    ASSERT_TRUE(trained->Train(train).ok());
    const std::string state = trained->SerializeState();
    ASSERT_FALSE(state.empty());

    auto loaded = MakeCodec(PqOptions(4, bits));
    ASSERT_TRUE(loaded->LoadState(state).ok());
    EXPECT_EQ(loaded->SerializeState(), state);
    const std::vector<float> x = Clustered(128, 16);
    std::string a, b;
    trained->Encode(x, &a);
    loaded->Encode(x, &b);
    EXPECT_EQ(a, b) << bits;
    std::vector<float> ya(x.size()), yb(x.size());
    ASSERT_TRUE(trained->Decode(a, 128, ya.data()).ok());
    ASSERT_TRUE(loaded->Decode(a, 128, yb.data()).ok());
    EXPECT_EQ(ya, yb) << bits;
  }
}

TEST(PqCodecTest, LoadStateValidates) {
  auto trained = MakeCodec(PqOptions(4, 4));
  ASSERT_TRUE(trained->Train(Clustered(512, 17)).ok());
  const std::string state = trained->SerializeState();

  auto other_shape = MakeCodec(PqOptions(8, 4));
  EXPECT_EQ(other_shape->LoadState(state).code(), absl::StatusCode::kInvalidArgument);

  auto codec = MakeCodec(PqOptions(4, 4));
  EXPECT_EQ(codec->LoadState(state.substr(0, state.size() - 1)).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(codec->LoadState(state + "x").code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(codec->LoadState("abc").code(), absl::StatusCode::kDataLoss);
  std::string nan_state = state;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan_state.data() + nan_state.size() - 4, &nan, sizeof nan);
  EXPECT_EQ(codec->LoadState(nan_state).code(), absl::StatusCode::kDataLoss);
  // None of the failures left the codec half-loaded.
  EXPECT_TRUE(codec->SerializeState().empty());
}

TEST(PqCodecTest, AnyCodeDecodesAndWrongSizesAreDataLoss) {
  auto codec = MakeCodec(PqOptions(4, 8));
  ASSERT_TRUE(codec->Train(Clustered(1024, 18)).ok());
  std::string bytes;
  for (int i = 0; i < 2 * 4; ++i) bytes.push_back(static_cast<char>(i * 37));
  std::vector<float> out(2 * kPqDim);
  ASSERT_TRUE(codec->Decode(bytes, 2, out.data()).ok());
  for (float v : out) EXPECT_TRUE(std::isfinite(v));
  EXPECT_EQ(codec->Decode(bytes, 3, out.data()).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(codec->Decode(bytes.substr(1), 2, out.data()).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace memoria
