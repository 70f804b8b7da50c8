/* reflector.h: client-go's Reflector: keeps a queue (or any sink) in step
 * with one resource collection on the API server by list + watch: a paged
 * initial list (or a streaming WatchList), then watches resumed from the
 * last resourceVersion seen, relisting only when that version is gone (410).
 * Used by the shared informer (informer.h); tests drive it alone.
 * Thread-safety: the reflector runs in a thread of its own (start/stop);
 * stats may be read from any thread. The sink is called from that thread. */
#ifndef KL_REFLECTOR_H
#define KL_REFLECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "delta_fifo.h"
#include "real_fifo.h"
#include "rest.h"
#include "store.h"

/* Where the reflector delivers what it learns. Each function gets ud and
 * returns 0 or a negative KL_E* code (logged; the reflector goes on). The
 * objects are borrowed for the call: a sink keeps its own references. */
typedef struct kl_reflector_sink {
  int (*add)(void *ud, kl_obj *obj);    /* watch ADDED */
  int (*update)(void *ud, kl_obj *obj); /* watch MODIFIED */
  int (*del)(void *ud, kl_obj *obj);    /* watch DELETED (last state) */
  /* a complete list: the whole collection at resource_version */
  int (*replace)(void *ud, kl_obj *const *objs, size_t n,
                 const char *resource_version);
  void *ud;
  /* optional: the watch events of one network read, in order, in one call
   * (the queue sinks take them under one lock hold and wake the consumer
   * once). NULL: add/update/del per event. */
  int (*push_batch)(void *ud, const kl_fifo_op *ops, size_t n);
} kl_reflector_sink;

/* Ready-made sinks on a queue or a store (borrowed: must outlive the
 * reflector). The store sink applies the changes directly. */
kl_reflector_sink kl_reflector_sink_delta_fifo(kl_delta_fifo *f);
kl_reflector_sink kl_reflector_sink_real_fifo(kl_real_fifo *f);
kl_reflector_sink kl_reflector_sink_store(kl_store *s);

typedef struct kl_reflector_opts {
  kl_rest *rest;         /* borrowed; must outlive the reflector */
  const char *path;      /* collection path, URL-encoded, e.g.
                            /api/v1/namespaces/ns/configmaps or
                            /apis/apps/v1/deployments (all namespaces) */
  const char *name;      /* for log lines; NULL: path */
  /* apiVersion/kind set on objects that lack them (list items); optional:
   * typed lists give them already (ConfigMapList -> ConfigMap) */
  const char *api_version, *kind;
  const char *label_selector, *field_selector; /* query syntax, or NULL */
  /* ask for PartialObjectMetadata (objects keep only apiVersion, kind and
   * metadata) */
  bool metadata_only;
  /* members stripped before objects enter the sink; NULL:
   * kl_obj_default_drop (metadata.managedFields). Borrowed. */
  const char *const *drop;
  bool keep_all;         /* strip nothing (overrides drop) */
  int page_size;         /* list page size; 0: 500; negative: no paging */
  /* Streaming lists (WatchList, sendInitialEvents=true). Falls back to
   * list + watch when the server refuses it (4xx) or ignores it. */
  bool watch_list;
  /* timeoutSeconds of each watch: uniform in [min, max]; 0: 300..600 */
  double watch_timeout_min_s, watch_timeout_max_s;
  /* a watch or list receiving no byte for this long is dead; 0: 300 */
  int idle_timeout_s;
  /* backoff between failures: initial, doubling to max, with up to 100%
   * jitter; reset after reset_s of health. 0: 0.8, 30, 120 */
  double backoff_initial_s, backoff_max_s, backoff_reset_s;
  unsigned seed;         /* jitter and timeout randomness; 0: from time */
} kl_reflector_opts;

/* Counters (monotonic) and state. Snapshot them with kl_reflector_stats. */
typedef struct kl_reflector_stats {
  uint64_t lists;          /* complete lists delivered (incl. the first) */
  uint64_t relists;        /* lists after the first */
  uint64_t list_requests;  /* HTTP list requests (pages) */
  uint64_t list_errors;    /* failed list attempts */
  uint64_t continue_expired; /* 410 on a continue token: list restarted */
  uint64_t watches;        /* watch requests made */
  uint64_t watch_restarts; /* watches made after the first one */
  uint64_t watch_list_used;      /* streaming lists completed */
  uint64_t watch_list_fallbacks; /* streaming list refused or ignored */
  /* why watches ended badly */
  uint64_t err_gone;       /* 410 / Expired (HTTP or ERROR event) */
  uint64_t err_http;       /* other HTTP status or ERROR event */
  uint64_t err_transport;  /* connection failures and resets */
  uint64_t err_idle;       /* no byte for idle_timeout_s */
  uint64_t err_decode;     /* malformed or truncated event */
  uint64_t err_short;      /* ended within 1 s with no event */
  uint64_t backoffs;       /* waits taken before retrying */
  /* watch events by type */
  uint64_t ev_added, ev_modified, ev_deleted, ev_bookmark, ev_error;
  uint64_t objects_listed; /* items of the last complete list */
  char last_rv[64];        /* last resourceVersion seen ("" before any) */
  bool synced;             /* the first list was delivered */
  bool running;
} kl_reflector_stats;

typedef struct kl_reflector kl_reflector;

/* Creates a reflector (not running). opts strings are copied; opts->rest
 * and opts->drop are borrowed. Returns 0 and a NEW *out (kl_reflector_free)
 * or KL_EINVAL (no rest or path) with a NEW message in *err. */
int kl_reflector_new(const kl_reflector_opts *opts, kl_reflector_sink sink,
                     kl_reflector **out, char **err);
/* Starts its thread. Returns 0, or KL_EINVAL when already started. */
int kl_reflector_start(kl_reflector *r);
/* Asks it to stop and waits for its thread (prompt: within about 100 ms,
 * even in the middle of a list or an idle watch). Idempotent. */
void kl_reflector_stop(kl_reflector *r);
/* Stops (if needed) and frees (NULL-safe). */
void kl_reflector_free(kl_reflector *r);

/* Snapshot of the counters; any thread. */
void kl_reflector_stats_get(kl_reflector *r, kl_reflector_stats *out);
/* The last resourceVersion seen, as a NEW string ("" before any). */
char *kl_reflector_last_rv(kl_reflector *r);

#endif
