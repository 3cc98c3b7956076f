/* chanasc runtime: a thread pool that runs the parallel loops of tensor programs.
 * Part of the code chanasc emits for a model; it needs only the C library and pthreads. */
#ifndef CHANASC_RUNTIME_H
#define CHANASC_RUNTIME_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A tensor program: runs iterations [begin, end) of its outermost parallel loop. */
typedef void (*chanasc_kernel)(void *const *args, int64_t begin, int64_t end);

typedef struct chanasc_pool chanasc_pool;

/* A pool of `threads` threads in all (the caller counts as one); 0 means one per CPU. */
chanasc_pool *chanasc_pool_create(int threads);
void chanasc_pool_destroy(chanasc_pool *pool);
int chanasc_pool_threads(const chanasc_pool *pool);

/* Runs kernel(args, b, e) over [0, extent) split into contiguous ranges, one per thread,
 * and returns when all are done. Small extents run on the calling thread alone. */
void chanasc_parallel_for(chanasc_pool *pool, chanasc_kernel kernel, void *const *args, int64_t extent);

/* Monotonic time in seconds, for profiles and benchmarks. */
double chanasc_now(void);

#ifdef __cplusplus
}
#endif
#endif
