/* metrics.h: a Prometheus metrics registry (counters, gauges, histograms
 * with labels) and its text exposition (format 0.0.4), served on /metrics
 * by http_endpoints.c and fed by the controller, workqueue, informers, the
 * REST client and Lua scripts (lua_metrics.c).
 * Thread-safety: every function may be called from any thread. Values are
 * updated with atomics (histograms under a per-series lock); a family's
 * series map is guarded by the family's mutex. */
#ifndef KL_METRICS_H
#define KL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kl.h"

typedef struct kl_metrics kl_metrics;       /* a registry */
typedef struct kl_metric kl_metric;         /* a family: name, type, labels */
typedef struct kl_metric_series kl_metric_series; /* one label-value set */

enum { KL_METRIC_COUNTER = 0, KL_METRIC_GAUGE, KL_METRIC_HISTOGRAM };

#define KL_METRICS_MAX_LABELS 16

/* The process-wide registry (created on first use, never freed). */
kl_metrics *kl_metrics_default(void);
/* A private registry (tests). Returns a NEW registry: kl_metrics_free. */
kl_metrics *kl_metrics_new(void);
/* Frees the registry, its families and series; nobody may use them. */
void kl_metrics_free(kl_metrics *r);

/* Registers a family, or finds the one already registered under name when
 * its type, label names (and buckets) are the same: registration is
 * idempotent, so several Lua states may define the same metric.
 * labels: NULL or a NULL-terminated array of label names (at most
 * KL_METRICS_MAX_LABELS). Histograms take strictly increasing finite
 * buckets (NULL/0: the Prometheus defaults .005 ... 10); +Inf is implicit.
 * Returns 0 with a borrowed *out valid for the registry's life; KL_EINVAL
 * for a bad metric or label name, bad buckets or too many labels;
 * KL_EEXIST when name is taken with another type, labels or buckets. *err
 * (may be NULL) gets a NEW message on failure. */
int kl_metrics_counter(kl_metrics *r, const char *name, const char *help,
                       const char *const *labels, kl_metric **out,
                       char **err);
int kl_metrics_gauge(kl_metrics *r, const char *name, const char *help,
                     const char *const *labels, kl_metric **out, char **err);
int kl_metrics_histogram(kl_metrics *r, const char *name, const char *help,
                         const char *const *labels, const double *buckets,
                         size_t nbuckets, kl_metric **out, char **err);

/* Families, borrowed. */
int kl_metric_type(const kl_metric *m);
const char *kl_metric_name(const kl_metric *m);
size_t kl_metric_nlabels(const kl_metric *m);
const char *kl_metric_label(const kl_metric *m, size_t i);

/* The series for these label values (created at 0 on first use), in the
 * order of the family's label names; n must equal kl_metric_nlabels (NULL
 * values count as ""). Returns a borrowed series valid for the registry's
 * life (cache it on hot paths), or NULL when n is wrong. */
kl_metric_series *kl_metric_with(kl_metric *m, const char *const *values,
                                 size_t n);
/* The same with the values as arguments, e.g.
 * kl_metric_withv(reconcile_total, "my-ctrl", "success"); the count must
 * match the family's labels (checked: NULL when it does not). */
kl_metric_series *kl_metric_withv_(kl_metric *m, size_t n, ...);
#define kl_metric_withv(m, ...)                                              \
  kl_metric_withv_((m), sizeof((const char *[]){__VA_ARGS__}) /              \
                            sizeof(const char *), __VA_ARGS__)

/* Updates. Each is a no-op on a NULL series or the wrong type, so a metric
 * that failed to register never crashes its callers. Counters only go up:
 * a negative or NaN n is ignored. */
void kl_counter_add(kl_metric_series *s, double n);
static inline void kl_counter_inc(kl_metric_series *s) { kl_counter_add(s, 1); }
/* Mirrors a monotonic total kept elsewhere (e.g. workqueue adds): sets the
 * counter to v when v is larger than its value. */
void kl_counter_set_total(kl_metric_series *s, double v);
void kl_gauge_set(kl_metric_series *s, double v);
void kl_gauge_add(kl_metric_series *s, double v);
void kl_histogram_observe(kl_metric_series *s, double v);

/* Reads (tests, health checks). A counter's or gauge's value; for a
 * histogram its sum. */
double kl_metric_series_value(kl_metric_series *s);
/* Histogram observation count (0 for other types). */
uint64_t kl_metric_series_count(kl_metric_series *s);

/* Collectors run at the start of every exposition, in registration order,
 * to refresh values mirrored from other modules (workqueue stats, informer
 * counters). Returns an id for kl_metrics_remove_collector. A collector
 * runs without registry locks held and may update any metric. */
typedef void (*kl_metrics_collect_fn)(kl_metrics *r, void *ud);
int kl_metrics_add_collector(kl_metrics *r, kl_metrics_collect_fn fn,
                             void *ud);
/* Removes it; when this returns, the collector is not running and will not
 * run again (so ud may be freed). */
void kl_metrics_remove_collector(kl_metrics *r, int id);

/* Appends the text exposition (Content-Type
 * "text/plain; version=0.0.4; charset=utf-8") to out: families sorted by
 * name, each with # HELP and # TYPE, series sorted by label values;
 * families without series print only HELP and TYPE lines. */
void kl_metrics_expose(kl_metrics *r, kl_buf *out);
#define KL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Formats v as Prometheus (and Go's strconv 'g', -1) does: "1", "0.25",
 * "1e-08", "1.234567e+06", "+Inf", "-Inf", "NaN". */
void kl_metrics_format_value(kl_buf *out, double v);

/* ---- klua's standard metrics --------------------------------------- */

/* The families the runtime updates, registered in kl_metrics_default() on
 * first call (controller-runtime's names where they exist). Borrowed, for
 * the process's life. */
typedef struct kl_std_metrics {
  /* {controller, result=success|error|requeue|requeue_after} */
  kl_metric *reconcile_total;
  kl_metric *reconcile_errors_total;     /* {controller} */
  kl_metric *reconcile_time_seconds;     /* histogram {controller} */
  kl_metric *active_workers;             /* gauge {controller} */
  kl_metric *max_concurrent_reconciles;  /* gauge {controller} */
  kl_metric *wq_depth;                   /* gauge {name} */
  kl_metric *wq_adds_total;              /* {name} */
  kl_metric *wq_retries_total;           /* {name} */
  kl_metric *wq_queue_duration_seconds;  /* histogram {name} */
  kl_metric *wq_work_duration_seconds;   /* histogram {name} */
  kl_metric *wq_unfinished_work_seconds; /* gauge {name} */
  kl_metric *wq_longest_running_processor_seconds; /* gauge {name} */
  kl_metric *rest_requests_total;        /* {code, method, host} */
  kl_metric *informer_relists_total;     /* {resource} */
  kl_metric *informer_watch_restarts_total; /* {resource} */
  kl_metric *informer_events_total;      /* {resource, type} */
  kl_metric *informer_objects;           /* gauge {resource} */
  kl_metric *lua_errors_total;           /* {controller} */
  kl_metric *reconcile_aborted_total;    /* {controller} */
  kl_metric *reloads_total;              /* {result} */
  kl_metric *leader_master_status;       /* gauge {name}: 1 while leading */
  kl_metric *events_dropped_total;       /* {reason=queue_full|spam|error} */
} kl_std_metrics;
const kl_std_metrics *kl_std_metrics_get(void);

/* Mirrors a workqueue's kl_wq_get_stats into the workqueue_* families
 * under {name} at every scrape (depth, adds, retries, unfinished work,
 * longest running processor). Duration histograms need per-item
 * observations: the controller observes workqueue_work_duration_seconds
 * itself (see docs/production.md). Returns a collector id; remove it
 * (kl_metrics_remove_collector) before freeing the queue. The name is
 * copied. */
struct kl_wq;
int kl_metrics_watch_workqueue(kl_metrics *r, const char *name,
                               struct kl_wq *q);

/* Mirrors an informer's kl_informer_stats_get into klua_informer_* under
 * {resource} (e.g. "v1/configmaps" or "apps/v1/deployments") at every
 * scrape: relists, watch restarts, watch events by type (ADDED, MODIFIED,
 * DELETED, BOOKMARK, ERROR) and cached objects. Same contract as
 * kl_metrics_watch_workqueue. */
struct kl_informer;
int kl_metrics_watch_informer(kl_metrics *r, const char *resource,
                              struct kl_informer *inf);

/* The Lua binding (lua_metrics.c): klua_core.metrics_counter, _gauge,
 * _histogram and metrics_expose, on kl_metrics_default(). */
struct lua_State;
void kl_lua_open_metrics(struct lua_State *L, int core);

#endif
