#ifndef MEMORIA_ENGINE_BACKEND_CUDA_CUDA_CHECK_H_
#define MEMORIA_ENGINE_BACKEND_CUDA_CUDA_CHECK_H_

#include <cstdio>
#include <cstdlib>

#include <cuda_runtime.h>

// A CUDA call that fails after the backend was created means a broken device or a bug (the
// Backend operations have no error path, as on the CPU): report it and stop.
#define MEMORIA_CUDA_CHECK(expr)                                                             \
  do {                                                                                       \
    if (cudaError_t memoria_cuda_error_ = (expr); memoria_cuda_error_ != cudaSuccess) {      \
      std::fprintf(stderr, "memoria: CUDA error %s at %s:%d: %s\n",                          \
                   cudaGetErrorString(memoria_cuda_error_), __FILE__, __LINE__, #expr);      \
      std::abort();                                                                          \
    }                                                                                        \
  } while (false)

#endif  // MEMORIA_ENGINE_BACKEND_CUDA_CUDA_CHECK_H_
