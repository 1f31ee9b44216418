#ifndef MEMORIA_ENGINE_UTIL_STATUS_MACROS_H_
#define MEMORIA_ENGINE_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"

// Returns the status of `expr` from the enclosing function when it is not OK.
#define MEMORIA_RETURN_IF_ERROR(expr)                              \
  do {                                                             \
    if (::absl::Status memoria_status_ = (expr); !memoria_status_.ok()) \
      return memoria_status_;                                      \
  } while (false)

#define MEMORIA_CONCAT_INNER_(a, b) a##b
#define MEMORIA_CONCAT_(a, b) MEMORIA_CONCAT_INNER_(a, b)

// `lhs = value of expr` when expr (a StatusOr) is OK, else returns its status.
#define MEMORIA_ASSIGN_OR_RETURN(lhs, expr) \
  MEMORIA_ASSIGN_OR_RETURN_IMPL_(MEMORIA_CONCAT_(memoria_statusor_, __LINE__), lhs, expr)
#define MEMORIA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(*tmp)

#endif  // MEMORIA_ENGINE_UTIL_STATUS_MACROS_H_
