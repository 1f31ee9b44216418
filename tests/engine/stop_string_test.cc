#include <random>
#include <string>
#include <vector>

#include "engine/sampling/sampler.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

struct Streamed {
  std::vector<std::string> shown;  // text returned by each Push
  bool stopped = false;
  std::string flushed;

  std::string Joined() const {
    std::string all;
    for (const std::string& s : shown) all += s;
    return all;
  }
};

// Pushes deltas until a stop; flushes when none is found.
Streamed Stream(const std::vector<std::string>& stops, const std::vector<std::string>& deltas) {
  StopStringMatcher matcher(stops);
  Streamed out;
  for (const std::string& delta : deltas) {
    StopStringMatcher::Result r = matcher.Push(delta);
    out.shown.push_back(r.text);
    if (r.stopped) {
      out.stopped = true;
      return out;
    }
  }
  out.flushed = matcher.Flush();
  return out;
}

TEST(StopStringMatcherTest, NoStopsPassesEverythingThrough) {
  Streamed s = Stream({}, {"Hello", ", ", "world"});
  EXPECT_EQ(s.shown, (std::vector<std::string>{"Hello", ", ", "world"}));
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(s.flushed, "");
}

TEST(StopStringMatcherTest, StopInsideOneDeltaCutsTheRest) {
  Streamed s = Stream({"STOP"}, {"Hello STOP world", "never seen"});
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.shown, (std::vector<std::string>{"Hello "}));
}

TEST(StopStringMatcherTest, StopSplitAcrossDeltas) {
  Streamed s = Stream({"STOP"}, {"Hel", "lo S", "TO", "P more"});
  EXPECT_TRUE(s.stopped);
  // "S" and "TO" are held back while they could still become "STOP".
  EXPECT_EQ(s.shown, (std::vector<std::string>{"Hel", "lo ", "", ""}));
}

TEST(StopStringMatcherTest, HeldTextIsReleasedWhenItStopsMatching) {
  Streamed s = Stream({"</s>"}, {"a<", "/x", "y"});
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(s.shown, (std::vector<std::string>{"a", "</x", "y"}));
}

TEST(StopStringMatcherTest, OverlappingPrefixFindsTheLaterStart) {
  // "aab": the first "a" cannot start "ab" once the second "a" arrives.
  EXPECT_EQ(Stream({"ab"}, {"aab"}).shown, (std::vector<std::string>{"a"}));
  Streamed chars = Stream({"ab"}, {"a", "a", "b"});
  EXPECT_TRUE(chars.stopped);
  EXPECT_EQ(chars.shown, (std::vector<std::string>{"", "a", ""}));
  // A self-overlapping stop string.
  Streamed s = Stream({"abab"}, {"ababa", "bab"});
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.Joined(), "");
  Streamed t = Stream({"abac"}, {"ababa", "c!"});
  EXPECT_TRUE(t.stopped);
  EXPECT_EQ(t.Joined(), "ab");
}

TEST(StopStringMatcherTest, HoldsBackOnlyTheLongestPossibleStart) {
  StopStringMatcher matcher({"abcd", "bx"});
  StopStringMatcher::Result r = matcher.Push("zzab");
  EXPECT_EQ(r.text, "zz");  // "ab" could start "abcd"
  r = matcher.Push("c");
  EXPECT_EQ(r.text, "");
  r = matcher.Push("e");
  EXPECT_EQ(r.text, "abce");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(matcher.Flush(), "");
}

TEST(StopStringMatcherTest, EarliestOfSeveralStopsWins) {
  Streamed s = Stream({"world", "lo w"}, {"hello world"});
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.Joined(), "hel");
  Streamed t = Stream({"\n\n", "User:"}, {"Sure.", "\nUser:", " hi"});
  EXPECT_TRUE(t.stopped);
  EXPECT_EQ(t.Joined(), "Sure.\n");
}

TEST(StopStringMatcherTest, FlushReturnsHeldText) {
  Streamed s = Stream({"<|end|>"}, {"answer <|en"});
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(s.Joined(), "answer ");
  EXPECT_EQ(s.flushed, "<|en");
}

TEST(StopStringMatcherTest, EmptyStopStringsAreIgnored) {
  Streamed s = Stream({"", "END"}, {"abc", "dEN", "D"});
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.Joined(), "abcd");
}

TEST(StopStringMatcherTest, MultiByteStopString) {
  Streamed s = Stream({"→END"}, {"x\xe2\x86\x92", "EN", "D"});
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.shown, (std::vector<std::string>{"x", "", ""}));
}

// Streaming must agree with searching the whole text at once, however it is split.
TEST(StopStringMatcherTest, AnySplitMatchesWholeTextSearch) {
  std::mt19937 rng(5);
  const std::vector<std::string> stops = {"aba", "bb", "abaab"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int len = rng() % 16;
    for (int i = 0; i < len; ++i) text += "ab"[rng() % 2];

    size_t cut = std::string::npos;
    for (const std::string& stop : stops) cut = std::min(cut, text.find(stop));
    const std::string expected = cut == std::string::npos ? text : text.substr(0, cut);

    std::vector<std::string> deltas;
    for (size_t pos = 0; pos < text.size();) {
      const size_t n = 1 + rng() % 4;
      deltas.push_back(text.substr(pos, n));
      pos += n;
    }
    Streamed s = Stream(stops, deltas);
    EXPECT_EQ(s.stopped, cut != std::string::npos) << text;
    EXPECT_EQ(s.Joined() + s.flushed, expected) << text;
  }
}

}  // namespace
}  // namespace memoria
