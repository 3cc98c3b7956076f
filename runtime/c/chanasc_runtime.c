/* chanasc runtime: the thread pool behind chanasc_parallel_for (see chanasc_runtime.h).
 * Each job is one parallel loop split into as many contiguous ranges as there are threads,
 * the caller taking the first; workers spin briefly between jobs, then sleep. */
#define _GNU_SOURCE
#include "chanasc_runtime.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct chanasc_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* The current job, published by incrementing `generation`. */
    chanasc_kernel kernel;
    void *const *args;
    int64_t extent;
    int parts;
    atomic_ulong generation;
    atomic_int pending;
    atomic_int sleepers;
    atomic_int stopping;
};

typedef struct {
    chanasc_pool *pool;
    int index;
} worker_arg;

/* Tensor programs follow each other within microseconds, so workers spin for a while
 * before sleeping: a wake-up through the kernel costs more than most programs take. */
#define SPIN_ROUNDS 200000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* With more threads than free cores, a spinning thread may hold the core the thread it
 * waits for needs: yield now and then. */
static inline void spin_pause(int round) {
    if ((round & 255) == 255)
        sched_yield();
    else
        cpu_relax();
}

static void run_part(chanasc_kernel kernel, void *const *args, int64_t extent, int parts, int i) {
    int64_t begin = extent * i / parts, end = extent * (i + 1) / parts;
    if (begin < end) kernel(args, begin, end);
}

static void *worker_main(void *raw) {
    worker_arg *wa = (worker_arg *)raw;
    chanasc_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        unsigned long g = atomic_load(&p->generation);
        for (int r = 0; g == seen && r < SPIN_ROUNDS && !atomic_load(&p->stopping); r++) {
            spin_pause(r);
            g = atomic_load(&p->generation);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stopping))
                pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stopping)) break;
        seen = g;
        if (index < p->parts) run_part(p->kernel, p->args, p->extent, p->parts, index);
        atomic_fetch_sub(&p->pending, 1);
    }
    return NULL;
}

chanasc_pool *chanasc_pool_create(int threads) {
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    chanasc_pool *p = (chanasc_pool *)calloc(1, sizeof(chanasc_pool));
    if (!p) return NULL;
    p->threads = threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->workers = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = (worker_arg *)malloc(sizeof(worker_arg));
        wa->pool = p;
        wa->index = i;
        if (pthread_create(&p->workers[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->threads = i; /* run with the threads that did start */
            break;
        }
    }
    return p;
}

static void wake_sleepers(chanasc_pool *p) {
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
}

void chanasc_pool_destroy(chanasc_pool *p) {
    if (!p) return;
    atomic_store(&p->stopping, 1);
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++) pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->workers);
    free(p);
}

int chanasc_pool_threads(const chanasc_pool *p) { return p ? p->threads : 1; }

void chanasc_parallel_for(chanasc_pool *p, chanasc_kernel kernel, void *const *args, int64_t extent) {
    int parts = p ? p->threads : 1;
    if (parts > extent) parts = (int)extent;
    if (parts <= 1) {
        kernel(args, 0, extent);
        return;
    }
    p->kernel = kernel;
    p->args = args;
    p->extent = extent;
    p->parts = parts;
    atomic_store(&p->pending, p->threads - 1);
    /* Sequentially consistent: a worker that goes to sleep after this increment sees it. */
    atomic_fetch_add(&p->generation, 1);
    wake_sleepers(p);
    run_part(kernel, args, extent, parts, 0);
    for (int r = 0; atomic_load(&p->pending) > 0; r++) spin_pause(r);
}

double chanasc_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
