#ifndef MEMORIA_TESTS_SERVER_PROMETHEUS_TEXT_H_
#define MEMORIA_TESTS_SERVER_PROMETHEUS_TEXT_H_

#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace memoria::testing {

// What a Prometheus scraper reads from text format 0.0.4: HELP and TYPE per family and samples
// keyed by `name{k="v",...}` (label values unescaped, labels in written order).
struct Exposition {
  std::map<std::string, std::string> help;
  std::map<std::string, std::string> type;
  std::map<std::string, double> samples;
  std::vector<std::string> families_in_order;  // as TYPE lines appear
};

inline double ParseValue(const std::string& text) {
  if (text == "+Inf") return std::numeric_limits<double>::infinity();
  if (text == "-Inf") return -std::numeric_limits<double>::infinity();
  if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  size_t used = 0;
  const double v = std::stod(text, &used);
  EXPECT_EQ(used, text.size()) << "value " << text;
  return v;
}

// HELP unescapes \\ and \n; label values also \".
inline std::string Unescape(std::string_view text, size_t* pos, char terminator) {
  std::string out;
  while (*pos < text.size() && text[*pos] != terminator) {
    char c = text[(*pos)++];
    if (c == '\\' && *pos < text.size()) {
      c = text[(*pos)++];
      if (c == 'n') c = '\n';
    }
    out += c;
  }
  return out;
}

// Adds a test failure for any line that is not valid exposition format.
inline Exposition ParsePrometheusText(const std::string& text) {
  Exposition parsed;
  EXPECT_TRUE(text.empty() || text.back() == '\n');
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const size_t space = line.find(' ', 7);
      EXPECT_NE(space, std::string::npos) << line;
      const std::string name = line.substr(7, space - 7);
      size_t pos = space + 1;
      std::string value = Unescape(line, &pos, '\0');
      if (line[2] == 'H') {
        parsed.help[name] = value;
      } else {
        EXPECT_EQ(parsed.type.count(name), 0u) << "second TYPE for " << name;
        EXPECT_EQ(parsed.help.count(name), 1u) << "TYPE before HELP for " << name;
        parsed.type[name] = value;
        parsed.families_in_order.push_back(name);
      }
      continue;
    }
    size_t pos = line.find_first_of("{ ");
    EXPECT_NE(pos, std::string::npos) << line;
    std::string key = line.substr(0, pos);
    if (line[pos] == '{') {
      key += '{';
      ++pos;
      while (pos < line.size() && line[pos] != '}') {
        const size_t eq = line.find("=\"", pos);
        EXPECT_NE(eq, std::string::npos) << line;
        key += line.substr(pos, eq - pos) + "=\"";
        pos = eq + 2;
        key += Unescape(line, &pos, '"') + "\"";
        EXPECT_EQ(line[pos], '"') << line;
        ++pos;
        if (line[pos] == ',') {
          key += ',';
          ++pos;
        }
      }
      EXPECT_EQ(line[pos], '}') << line;
      key += '}';
      ++pos;
    }
    EXPECT_EQ(line[pos], ' ') << line;
    EXPECT_EQ(parsed.samples.count(key), 0u) << "duplicate sample " << key;
    parsed.samples[key] = ParseValue(line.substr(pos + 1));
  }
  return parsed;
}

}  // namespace memoria::testing

#endif  // MEMORIA_TESTS_SERVER_PROMETHEUS_TEXT_H_
