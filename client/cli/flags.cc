#include "client/cli/flags.h"

#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace memoria::cli {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& valued,
                                   const std::set<std::string>& switches,
                                   std::vector<std::string>* positional) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (switches.count(a)) {
      f.values_[a] = "1";
    } else if (valued.count(a)) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(a, " needs a value"));
      f.values_[a] = args[++i];
    } else if (positional != nullptr && (a.empty() || a[0] != '-')) {
      positional->push_back(a);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", a, "'"));
    }
  }
  return f;
}

std::string Flags::String(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

absl::StatusOr<std::string> Flags::Required(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return absl::InvalidArgumentError(absl::StrCat(name, " is required"));
  return it->second;
}

absl::StatusOr<int64_t> Flags::Int(const std::string& name, int64_t def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (errno != 0 || end == it->second.c_str() || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat(name, ": '", it->second, "' is not an integer"));
  }
  return static_cast<int64_t>(v);
}

absl::StatusOr<double> Flags::Double(const std::string& name, double def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  if (errno != 0 || end == it->second.c_str() || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat(name, ": '", it->second, "' is not a number"));
  }
  return v;
}

}  // namespace memoria::cli
