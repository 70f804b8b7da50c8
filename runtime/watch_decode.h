/* watch_decode.h: an incremental decoder for Kubernetes watch streams (the
 * de-chunked body of GET ...?watch=1). Bytes are fed as they arrive, at any
 * split; complete events come out one at a time as kl_obj versions (or a
 * decoded Status for ERROR events). Used by the reflector's watch loop.
 * Thread-safety: a decoder belongs to one thread at a time; the objects it
 * hands out are immutable and may be shared freely. See docs/wire.md. */
#ifndef KL_WATCH_DECODE_H
#define KL_WATCH_DECODE_H

#include <stddef.h>

#include "object.h"
#include "status.h"

typedef enum kl_watch_type {
  KL_WATCH_ADDED = 1,
  KL_WATCH_MODIFIED,
  KL_WATCH_DELETED,
  KL_WATCH_BOOKMARK,
  KL_WATCH_ERROR,
} kl_watch_type;

/* One decoded event. Exposed so callers can keep it on the stack. */
typedef struct kl_watch_event {
  kl_watch_type type;
  /* ADDED/MODIFIED/DELETED/BOOKMARK: a NEW reference (release it, or call
   * kl_watch_event_clear). A BOOKMARK's object has no name: only its
   * resourceVersion (kl_obj_resource_version) matters. NULL for ERROR. */
  kl_obj *obj;
  /* ERROR only: the decoded Status (e.g. code 410 reason Expired); zeroed
   * otherwise. Owned by the event. */
  kl_status status;
} kl_watch_event;

/* Default limit on the size of one event (64 MiB). */
#define KL_WATCH_DEFAULT_MAX_EVENT ((size_t)64 << 20)

typedef struct kl_watch_decoder kl_watch_decoder;

/* Returns a NEW decoder (free with kl_watch_decoder_free). opts (may be
 * NULL) is how event objects become kl_obj: typically drop =
 * kl_obj_default_drop plus api_version/kind to inject when missing. Its
 * strings are copied; opts->drop is borrowed and must outlive the decoder.
 * BOOKMARK objects are always accepted without a name; for other events an
 * object without metadata.name (e.g. a Table watch, kind Table) is an error
 * unless opts->allow_unnamed is set. max_event: largest accepted event in
 * bytes, 0 for KL_WATCH_DEFAULT_MAX_EVENT. */
kl_watch_decoder *kl_watch_decoder_new(const kl_obj_opts *opts,
                                       size_t max_event);
void kl_watch_decoder_free(kl_watch_decoder *d);

/* Appends n bytes of the stream (copied). Ignored while the decoder is in
 * the error state. Call kl_watch_decoder_next until it returns 0 after each
 * feed, so that the event size limit is enforced as data arrives. */
void kl_watch_decoder_feed(kl_watch_decoder *d, const char *p, size_t n);

/* Takes the next complete event. Returns 1 and fills *ev (clear it with
 * kl_watch_event_clear), 0 when more bytes are needed, or a negative error:
 * KL_EJSON (malformed or truncated JSON), KL_EPROTO (valid JSON that is not
 * a watch event: no "type" or "object", unknown type, an ERROR object that
 * is not a Status, an event over the size limit), KL_EINVAL (the object was
 * rejected by kl_obj_new, e.g. no metadata.name). Errors are sticky: the
 * stream cannot be trusted past one, so every later call returns the same
 * error until kl_watch_decoder_reset. kl_watch_decoder_error explains it. */
int kl_watch_decoder_next(kl_watch_decoder *d, kl_watch_event *ev);

/* Call at the end of the stream, after next() returned 0. Returns 0 when
 * nothing but whitespace is left, else KL_EPROTO (the stream ended inside an
 * event) or the sticky error. */
int kl_watch_decoder_finish(kl_watch_decoder *d);

/* The message of the current error ("" when none); borrowed until the next
 * call on d. Names the problem and sizes, never quotes large payloads. */
const char *kl_watch_decoder_error(const kl_watch_decoder *d);

/* Drops buffered bytes and any error, ready for a new stream. */
void kl_watch_decoder_reset(kl_watch_decoder *d);

/* Bytes buffered and not yet returned as events. */
size_t kl_watch_decoder_buffered(const kl_watch_decoder *d);

/* Releases the event's object and status and zeroes it (NULL-safe). */
void kl_watch_event_clear(kl_watch_event *ev);

/* "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" (static). */
const char *kl_watch_type_name(kl_watch_type t);

#endif
