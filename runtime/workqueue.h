/* workqueue.h: the rate-limited work queue between event hooks and Lua
 * workers, with client-go util/workqueue's guarantees:
 *   - fair: items come out in the order they were added;
 *   - stingy: an item queued several times is processed once, and an item
 *     being processed is never handed to a second worker: a re-add while it
 *     is processing is deferred until kl_wq_done;
 *   - delayed adds (kl_wq_add_after) and rate-limited adds (per-item
 *     exponential backoff, base to max, combined with an overall token
 *     bucket, as DefaultControllerRateLimiter);
 *   - shutdown: getters wake up and get KL_ECLOSED; shutdown_drain waits for
 *     items in processing to be done.
 * Items are C strings (typically "namespace/name"); the queue copies them.
 * Thread-safety: every function may be called from any thread. */
#ifndef KL_WORKQUEUE_H
#define KL_WORKQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_wq kl_wq;

typedef struct kl_wq_opts {
  double base_delay;  /* per-item backoff start, seconds (default 0.005) */
  double max_delay;   /* per-item backoff cap, seconds (default 1000) */
  double qps;         /* overall token bucket rate (default 10) */
  int burst;          /* overall bucket size (default 100) */
  /* Called by kl_wq_get on the getter's thread, outside the queue's lock,
   * with the seconds the item waited between being queued and handed out
   * (feeds workqueue_queue_duration_seconds). NULL: none. */
  void (*on_get)(void *ud, double waited_s);
  void *on_get_ud;
} kl_wq_opts;

/* Counters for metrics (controller-runtime's workqueue_* names). */
typedef struct kl_wq_stats {
  size_t depth;             /* items ready to be handed out */
  size_t waiting;           /* items delayed, not yet ready */
  size_t processing;        /* items handed out and not done */
  uint64_t adds_total;      /* adds that queued an item (not dedupes) */
  uint64_t retries_total;   /* rate-limited adds */
  double queue_seconds_sum; /* total time items waited before a get */
  uint64_t queue_count;
  double work_seconds_sum;  /* total time between get and done */
  uint64_t work_count;
  double unfinished_seconds;      /* sum of ages of items in processing */
  double longest_running_seconds; /* age of the oldest item in processing */
} kl_wq_stats;

/* opts may be NULL for the defaults. Returns a NEW queue. */
kl_wq *kl_wq_new(const kl_wq_opts *opts);
/* Frees the queue; call after shutdown once no thread uses it. */
void kl_wq_free(kl_wq *q);

/* Queues item unless it is already queued (then nothing happens). If it is
 * being processed, it is queued again when kl_wq_done is called for it.
 * Ignored after shutdown. */
void kl_wq_add(kl_wq *q, const char *item);
/* Queues item after delay seconds (<= 0: now). A later add_after for an item
 * already waiting keeps the earlier of the two times. */
void kl_wq_add_after(kl_wq *q, const char *item, double delay);
/* add_after(item, when(item)): the item's failure count grows. */
void kl_wq_add_rate_limited(kl_wq *q, const char *item);
/* The delay the rate limiter gives item now, counting one more failure. */
double kl_wq_when(kl_wq *q, const char *item);
/* Clears item's failure history (call on success). */
void kl_wq_forget(kl_wq *q, const char *item);
/* How many times item has been rate-limited since the last forget. */
int kl_wq_num_requeues(kl_wq *q, const char *item);

/* Blocks until an item is ready, the timeout passes (timeout < 0: forever),
 * or the queue shuts down. Returns 0 with *item a NEW string (free it, and
 * call kl_wq_done with it), KL_ETIMEDOUT, or KL_ECLOSED (shut down and, for
 * plain shutdown, nothing more to hand out). */
int kl_wq_get(kl_wq *q, double timeout, char **item);
/* Marks item as no longer processing; re-queues it if it was added
 * meanwhile. */
void kl_wq_done(kl_wq *q, const char *item);

/* Stops the queue: adds are ignored, getters return KL_ECLOSED. */
void kl_wq_shutdown(kl_wq *q);
/* Like shutdown, then waits until every item in processing is done (or the
 * timeout passes; < 0 forever). Returns 0 or KL_ETIMEDOUT. */
int kl_wq_shutdown_drain(kl_wq *q, double timeout);
bool kl_wq_shutting_down(kl_wq *q);

/* Ready items (not counting delayed ones or ones in processing). */
size_t kl_wq_len(kl_wq *q);
/* Fills *out with a consistent snapshot of the counters. */
void kl_wq_get_stats(kl_wq *q, kl_wq_stats *out);

#endif
