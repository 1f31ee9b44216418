#ifndef MEMORIA_SERVER_REQUEST_LOG_H_
#define MEMORIA_SERVER_REQUEST_LOG_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memoria {

// A fresh request id: "req-" and 16 hex digits, unique in the process and unlikely to repeat
// across restarts.
std::string NewRequestId();

// One structured log line on stderr: a JSON object with the time, the event name and the
// fields given (values are strings; numbers are written as such by the caller). Lines from
// concurrent threads never interleave.
using LogFields = std::vector<std::pair<std::string_view, std::string>>;
void LogEvent(std::string_view event, const LogFields& fields);

}  // namespace memoria

#endif  // MEMORIA_SERVER_REQUEST_LOG_H_
