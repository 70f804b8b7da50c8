/* events.h: the event recorder: core/v1 Events about objects, sent from a
 * bounded queue by a background thread through client-go's EventCorrelator:
 *   - spam filter: a token bucket per source+object (burst 25, one more
 *     every 5 minutes); events beyond it are dropped;
 *   - aggregation: once 10 events with the same source, object, type and
 *     reason but different messages arrive within 10 minutes, further ones
 *     go into one Event whose message is "(combined from similar events): "
 *     + the latest message;
 *   - dedupe: an event identical to one already sent PATCHes that Event's
 *     count and lastTimestamp instead of creating a new one.
 * A full queue drops the event and counts it (klua_events_dropped_total).
 * Used by the runtime for klua.event(obj, type, reason, message).
 * Thread-safety: kl_events_record may be called from any thread; the
 * correlator state belongs to the sender thread. */
#ifndef KL_EVENTS_H
#define KL_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "rest.h"

typedef struct kl_events kl_events;

typedef struct kl_events_opts {
  kl_rest *rest;          /* borrowed; must outlive the recorder */
  const char *component;  /* source.component and reportingComponent;
                             NULL: "klua" */
  const char *instance;   /* reportingInstance (e.g. the pod or host name);
                             NULL: the host name */
  size_t queue_size;      /* 0: 1000 */
  int spam_burst;         /* 0: 25 */
  double spam_qps;        /* 0: 1/300 */
  int max_similar;        /* aggregation threshold; 0: 10 */
  double aggregate_window; /* seconds; 0: 600 */
} kl_events_opts;

/* The object an event is about (borrowed strings; NULL counts as ""). */
typedef struct kl_event_ref {
  const char *api_version, *kind, *namespace, *name, *uid, *resource_version;
} kl_event_ref;

/* Fills ref with NEW strings read from obj's JSON (release them with
 * kl_event_ref_free). api_version/kind fall back to the given defaults
 * when the object lacks them (items of typed lists). Returns 0, or
 * KL_EINVAL when obj has no metadata.name (ref is then empty). */
int kl_event_ref_from_json(kl_span obj, const char *api_version,
                           const char *kind, kl_event_ref *ref);
void kl_event_ref_free(kl_event_ref *ref);

/* Starts the sender thread. Returns 0 and a NEW recorder (kl_events_free),
 * or KL_EINVAL with a NEW *err. */
int kl_events_new(const kl_events_opts *opts, kl_events **out, char **err);

/* Queues an event (type "Normal" or "Warning"; reason CamelCase; message
 * up to 1024 bytes, longer ones are cut). Never blocks on the network.
 * Returns 0, KL_EINVAL (bad type, empty reason or name), KL_EAGAIN (queue
 * full: dropped and counted) or KL_ECLOSED (recorder stopping). */
int kl_events_record(kl_events *e, const kl_event_ref *ref, const char *type,
                     const char *reason, const char *message);

typedef struct kl_events_stats {
  uint64_t recorded;      /* accepted into the queue */
  uint64_t created;       /* POSTed */
  uint64_t patched;       /* deduped into an existing Event */
  uint64_t aggregated;    /* went into a "combined" Event */
  uint64_t dropped_full;  /* queue full */
  uint64_t dropped_spam;  /* spam filter */
  uint64_t errors;        /* the API server refused or was unreachable */
} kl_events_stats;
void kl_events_get_stats(kl_events *e, kl_events_stats *out);

/* Waits until every queued event was handled (sent, dropped or failed), or
 * timeout seconds (< 0: forever). Returns 0 or KL_ETIMEDOUT. */
int kl_events_flush(kl_events *e, double timeout);

/* Sends what is queued (up to about 5 s), stops the thread and frees.
 * NULL-safe. */
void kl_events_free(kl_events *e);

#endif
