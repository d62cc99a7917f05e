/*
 * tg_threads.c -- the kernel library's thread pool (native pthreads; serial on freestanding wasm).
 *
 * One fixed pool of persistent workers, sized by tg_set_threads(n): the caller's thread is
 * worker 0 and n - 1 pthreads are workers 1..n-1. tg_parallel_for(count, fn, ctx) hands the
 * tasks 0..count-1 out STATICALLY: worker w runs the contiguous range
 * [w*count/n, (w+1)*count/n). No work stealing, no atomics on the data: which worker computes
 * which output is a function of (count, n) alone, so a result is deterministic for a given
 * thread count, and the kernels choose partitions (rows, columns, batch x heads) whose
 * summation order per output element does not depend on n at all -- those results are bitwise
 * equal to one thread (docs/threads.md).
 *
 * Wake and join are one mutex + two condition variables and a generation counter: a parallel
 * region costs a broadcast and a wait (tens of microseconds), which is why the kernels only go
 * parallel above a work threshold (TG_PAR_MIN_FLOPS in tg_internal.h).
 *
 * The freestanding wasm builds have no threads (no libc, no shared memory): TG_THREADS is not
 * defined there, tg_set_threads reports 1 in effect, and tg_parallel_for runs every task on
 * the caller, in task order.
 *
 * tg_parallel_regions() counts the regions that really ran on more than one thread: a region
 * counts at its join only if a pool worker (w >= 1) ran at least one of its tasks, so a pool
 * that hands nothing out, or whose workers never take part, counts none. The kernel tests
 * assert the count, because bitwise-equal results alone cannot tell a split from a serial run.
 *
 * tg_pool_probe_ns(regions, asleep) times the pool itself: empty regions, back to back (the
 * workers spinning) or each after a pause (the workers asleep), for the bench check's
 * pool:wake_join rows and the report's overhead decomposition.
 *
 * -D TG_BUG_SERIAL_POOL is that fault on purpose: tg_set_threads still puts n in effect, but
 * every region runs on the caller (results unchanged, no region counted);
 * tests/kernels/test_kernels_threads.py builds it and shows the split assertion fail.
 */
/* clock_gettime under -std=c11 (tg_pool_probe_ns) */
#define _POSIX_C_SOURCE 199309L
#include "tg_internal.h"

static int32_t n_threads = 1; /* in effect: workers including the caller */
static int in_region;         /* a parallel region is running: nested regions run serially */
/* regions a pool worker took part in since load (tg_parallel_regions); only the thread that
 * calls the kernels writes it, after the join. Wraps modulo 2^32. */
static uint32_t regions;

#ifdef TG_THREADS
#include <pthread.h>
#include <time.h>

static pthread_t workers[TG_MAX_THREADS];
static int32_t n_started; /* pthreads alive (workers 1..n_started) */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static uint64_t generation; /* bumped per region; workers run each generation once */
static uint64_t born[TG_MAX_THREADS]; /* generation at each worker's creation */
static int32_t pending;     /* workers still running the current region */
static int quit;            /* set while shrinking the pool: workers above the new size exit */

static void (*job_fn)(void *ctx, int32_t task, int32_t worker);
static void *job_ctx;
static int32_t job_count, job_workers;
static int32_t helped; /* tasks of the current region run by workers 1..n-1 */

/* Run worker w's share of the current region; returns how many tasks it ran. */
static int32_t run_share(int32_t w) {
    int32_t lo = (int32_t)((int64_t)w * job_count / job_workers);
    int32_t hi = (int32_t)((int64_t)(w + 1) * job_count / job_workers);
    for (int32_t i = lo; i < hi; i++) job_fn(job_ctx, i, w);
    return hi > lo ? hi - lo : 0;
}

/* Spin this many pause-loop rounds (~100 us) for the next region before sleeping on the
 * condition variable: waking a sleeping thread costs a futex call and, on a VM, an interrupt
 * to an idle vCPU. Back-to-back 512^3 matmuls on this 2-vCPU VM ran 1.38x faster on 2 threads
 * than on 1 without the spin and 1.74x with it (best of 60, load average 0.3-0.5). A kernel
 * called in a loop therefore finds its workers awake. */
#ifndef TG_SPIN /* -DTG_SPIN=N builds a variant (docs/threads.md, "The wasm spin") */
#if defined(__wasm__)
/* wasm has no pause instruction: a round is one atomic load, so 2000 rounds last microseconds
 * and the workers were asleep by the next region. 100000 rounds (an estimated ~100 us, as long
 * as native's spin; not timed) against 2000, paired (compare --paired, em-wasm32-pthread): the
 * back-to-back region 2 to 30 times cheaper; a 2-thread train step 13 % / 5 % faster at small /
 * medium in Node 24, 5.5 % faster at medium in Chromium, the same elsewhere (docs/threads.md). */
#define TG_SPIN 100000
#else
#define TG_SPIN 2000
#endif
#endif

static void spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg) {
    int32_t w = (int32_t)(intptr_t)arg;
    pthread_mutex_lock(&lock);
    /* the generation when the pool grew, not now: a region may already have started */
    uint64_t seen = born[w];
    for (;;) {
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < TG_SPIN && __atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen &&
                        !__atomic_load_n(&quit, __ATOMIC_ACQUIRE);
             i++) {
            spin_pause();
        }
        pthread_mutex_lock(&lock); /* the job fields are read under the lock that wrote them */
        while (generation == seen && !(quit && w >= n_threads)) pthread_cond_wait(&wake, &lock);
        if (quit && w >= n_threads) break;
        seen = generation;
        int takes_part = w < job_workers;
        pthread_mutex_unlock(&lock);
        if (takes_part) {
            int32_t ran = run_share(w);
            /* relaxed: the caller reads it after the join, which the pending/lock pair orders */
            if (ran) __atomic_add_fetch(&helped, ran, __ATOMIC_RELAXED);
        }
        pthread_mutex_lock(&lock);
        if (takes_part && __atomic_sub_fetch(&pending, 1, __ATOMIC_RELEASE) == 0) {
            pthread_cond_signal(&done);
        }
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

static int32_t resize(int32_t n) {
    if (n < n_started + 1) { /* shrink: stop and join workers n..n_started */
        pthread_mutex_lock(&lock);
        n_threads = n;
        __atomic_store_n(&quit, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lock);
        for (int32_t w = n; w <= n_started; w++) pthread_join(workers[w], 0);
        pthread_mutex_lock(&lock);
        __atomic_store_n(&quit, 0, __ATOMIC_RELEASE);
        n_started = n - 1;
        pthread_mutex_unlock(&lock);
        return n;
    }
    for (int32_t w = n_started + 1; w < n; w++) {
        born[w] = generation; /* only this (the caller's) thread bumps it */
        if (pthread_create(&workers[w], 0, worker_main, (void *)(intptr_t)w) != 0) break;
        n_started = w;
    }
    n_threads = n_started + 1; /* fewer than asked if the system refused a thread */
    return n_threads;
}

void tg_parallel_for(int32_t count, void (*fn)(void *ctx, int32_t task, int32_t worker),
                     void *ctx) {
    int32_t n = n_threads < count ? n_threads : count;
#ifdef TG_BUG_SERIAL_POOL
    n = 1; /* the fault: a pool that is sized but never handed a region */
#endif
    if (n <= 1 || in_region) {
        for (int32_t i = 0; i < count; i++) fn(ctx, i, 0);
        return;
    }
    in_region = 1;
    pthread_mutex_lock(&lock);
    job_fn = fn;
    job_ctx = ctx;
    job_count = count;
    job_workers = n;
    pending = n - 1;
    __atomic_store_n(&helped, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    run_share(0);
    for (int i = 0; i < TG_SPIN && __atomic_load_n(&pending, __ATOMIC_ACQUIRE) > 0; i++) {
        spin_pause();
    }
    pthread_mutex_lock(&lock);
    while (pending > 0) pthread_cond_wait(&done, &lock);
    if (__atomic_load_n(&helped, __ATOMIC_RELAXED) > 0) regions++;
    pthread_mutex_unlock(&lock);
    in_region = 0;
}

static void empty_task(void *ctx, int32_t task, int32_t worker) {
    (void)ctx;
    (void)task;
    (void)worker;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Past the workers' TG_SPIN (~100 us) with room to spare: they are asleep on `wake` by then. */
#define TG_PROBE_PAUSE_NS 1e6

TG_API int32_t tg_pool_probe_ns(int32_t count, int32_t asleep) {
    if (count < 1 || n_threads <= 1 || in_region) return -1;
    double total = 0.0;
    uint32_t before;
    if (asleep) {
        before = regions;
        for (int32_t r = 0; r < count; r++) {
            double until = now_ns() + TG_PROBE_PAUSE_NS;
            while (now_ns() < until) spin_pause(); /* no sleep call: emscripten's main thread */
            double t0 = now_ns();
            tg_parallel_for(n_threads, empty_task, 0);
            total += now_ns() - t0;
        }
    } else {
        tg_parallel_for(n_threads, empty_task, 0); /* the workers are awake and spinning now */
        before = regions;
        double t0 = now_ns();
        for (int32_t r = 0; r < count; r++) tg_parallel_for(n_threads, empty_task, 0);
        total = now_ns() - t0;
    }
    /* a region a pool worker did not take part in is not the cost being asked for */
    if (regions - before != (uint32_t)count) return -2;
    double mean = total / count;
    return mean >= 2147483647.0 ? 2147483647 : (int32_t)(mean + 0.5);
}
#else

void tg_parallel_for(int32_t count, void (*fn)(void *ctx, int32_t task, int32_t worker),
                     void *ctx) {
    for (int32_t i = 0; i < count; i++) fn(ctx, i, 0);
}

TG_API int32_t tg_pool_probe_ns(int32_t count, int32_t asleep) {
    (void)count;
    (void)asleep;
    return -1; /* no pool on this build */
}
#endif

TG_API int32_t tg_set_threads(int32_t n) {
    if (n < 1 || n > TG_MAX_THREADS || in_region) return -1;
#ifdef TG_THREADS
    if (n != n_threads) n_threads = resize(tg_gemm_reserve(n));
#endif
    /* Without threads 1 stays in effect, and no pack buffers are reserved for workers that
     * never exist: the bench's pool probe asks every build for 2 threads, and a freestanding
     * build's heap must stay as it was (its signed-off speed figures were measured so). */
    return n_threads;
}

TG_API int32_t tg_get_threads(void) { return n_threads; }

TG_API int32_t tg_parallel_regions(void) { return (int32_t)regions; }

int32_t tg_parallel_chunks(double work, int32_t units) {
    int32_t n = in_region ? 1 : n_threads;
    if (n > units) n = units;
    if (n <= 1 || work < TG_PAR_MIN_WORK) return 1;
    return n;
}

typedef struct {
    size_t n;
    int32_t chunks;
    void (*fn)(void *ctx, size_t lo, size_t hi);
    void *ctx;
} range_job;

static void range_task(void *ctx, int32_t task, int32_t worker) {
    (void)worker;
    const range_job *j = ctx;
    size_t lo = (size_t)((double)task * (double)j->n / j->chunks);
#ifdef TG_BUG_RANGE_TAIL
    /* fault: every range n / chunks long, so the remainder is never run */
    lo = (size_t)task * (j->n / (size_t)j->chunks);
    size_t hi = lo + j->n / (size_t)j->chunks;
#else
    size_t hi = task + 1 == j->chunks ? j->n
                                      : (size_t)((double)(task + 1) * (double)j->n / j->chunks);
#endif
    if (hi > lo) j->fn(j->ctx, lo, hi);
}

void tg_parallel_range(size_t n, double work, void (*fn)(void *ctx, size_t lo, size_t hi),
                       void *ctx) {
    int32_t units = n > (size_t)TG_MAX_THREADS ? TG_MAX_THREADS : (int32_t)n;
    int32_t chunks = tg_parallel_chunks(work, units);
    if (chunks <= 1) {
        if (n) fn(ctx, 0, n);
        return;
    }
    range_job job = {n, chunks, fn, ctx};
    tg_parallel_for(chunks, range_task, &job);
}
