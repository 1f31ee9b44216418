#ifndef MEMORIA_CLIENT_CLI_FLAGS_H_
#define MEMORIA_CLIENT_CLI_FLAGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace memoria::cli {

// Command-line flags of one subcommand: "--name value", "-n value" and bare "--switch". Every
// flag must be declared by the command; unknown flags and malformed numbers are errors naming
// the flag.
class Flags {
 public:
  // `switches` take no value; every other name takes one. Arguments that are not flags go to
  // `positional` when given, else they are errors.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& valued,
                                     const std::set<std::string>& switches,
                                     std::vector<std::string>* positional = nullptr);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string String(const std::string& name, const std::string& def = "") const;
  absl::StatusOr<std::string> Required(const std::string& name) const;
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t def) const;
  absl::StatusOr<double> Double(const std::string& name, double def) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace memoria::cli

#endif  // MEMORIA_CLIENT_CLI_FLAGS_H_
