/* list_decode.h: decodes a Kubernetes list response body (ConfigMapList,
 * PartialObjectMetadataList, a custom resource's list, ...) into kl_obj
 * items plus the list's resourceVersion, continue token and
 * remainingItemCount. The reflector's initial sync runs through it, so it is
 * one pass over the bytes with no JSON tree. Two faces over one engine:
 * kl_list_decode for a body held whole, and kl_list_decoder for a body fed as
 * it arrives (items come out as soon as each is complete, so a 170 MB list
 * is never buffered whole). Thread-safety: a decoder or kl_list belongs to
 * one thread at a time; the items are immutable and shareable. docs/wire.md.
 *
 * Items get apiVersion/kind injected when they lack them (items of typed
 * lists carry neither), as client-go's dynamic client does: apiVersion is
 * the list's, kind the list's minus its "List" suffix ("ConfigMapList" ->
 * "ConfigMap"); when the list has none, opts->api_version / opts->kind are
 * used. Items that carry their own (PartialObjectMetadataList) keep them. */
#ifndef KL_LIST_DECODE_H
#define KL_LIST_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "object.h"

/* Default limit on the size of one item (64 MiB). */
#define KL_LIST_DEFAULT_MAX_ITEM ((size_t)64 << 20)

/* A whole decoded list. Exposed so callers read fields directly. */
typedef struct kl_list {
  char *api_version;      /* of the list, e.g. "v1"; "" when absent */
  char *kind;             /* e.g. "ConfigMapList"; "" when absent */
  char *resource_version; /* metadata.resourceVersion; "" when absent */
  char *continue_token;   /* metadata.continue; "" on the last page */
  int64_t remaining_item_count; /* metadata.remainingItemCount; -1 absent */
  kl_obj **items;         /* NEW references, in body order */
  size_t nitems;
} kl_list;

/* Decodes the list body [body, body+n) (not copied) into *out; release with
 * kl_list_free. opts (may be NULL): drop paths (e.g. kl_obj_default_drop),
 * fallback api_version/kind, allow_unnamed. Returns 0, KL_EJSON (malformed
 * JSON, e.g. a YAML body), KL_EPROTO (valid JSON that is not a list: no
 * "items", e.g. a Table or a single object; an item over the size limit) or
 * KL_EINVAL (an item rejected by kl_obj_new, e.g. no metadata.name). On
 * error *out is zeroed and, when err is not NULL, *err is a NEW message
 * (free it) naming the problem and the byte offset or item index. */
int kl_list_decode(const char *body, size_t n, const kl_obj_opts *opts,
                   kl_list *out, char **err);

/* Releases the items and strings of l and zeroes it (NULL-safe). */
void kl_list_free(kl_list *l);

/* ---- incremental decoding ---- */

typedef struct kl_list_decoder kl_list_decoder;

/* Returns a NEW decoder (free with kl_list_decoder_free). opts as for
 * kl_list_decode (strings copied, opts->drop borrowed: it must outlive the
 * decoder). max_item: largest accepted item in bytes, 0 for the default. */
kl_list_decoder *kl_list_decoder_new(const kl_obj_opts *opts, size_t max_item);
void kl_list_decoder_free(kl_list_decoder *d);

/* Appends n bytes of the body (copied; ignored in the error state). Call
 * kl_list_decoder_next until it returns 0 after each feed. */
void kl_list_decoder_feed(kl_list_decoder *d, const char *p, size_t n);

/* Takes the next complete item: returns 1 and sets *item to a NEW reference,
 * 0 when none is ready (more bytes needed, or the list is done), or a
 * negative error as kl_list_decode. Errors are sticky until reset.
 * Items lacking apiVersion/kind that arrive before the list's own "kind"
 * member (custom resource lists sort their keys: apiVersion, items, kind)
 * are held back until it is known, unless opts gave a kind. */
int kl_list_decoder_next(kl_list_decoder *d, kl_obj **item);

/* Call after the last feed. Returns 0 when the body was one complete list
 * (then call next() until 0 again: held-back items come out), else the
 * error (KL_EPROTO when the body ended early or had no "items"). */
int kl_list_decoder_finish(kl_list_decoder *d);

/* The list's metadata seen so far; complete only after finish() returned 0
 * (a custom resource list sends its metadata after the items). Borrowed,
 * valid until the next call on d. Strings are never NULL. */
typedef struct kl_list_meta {
  const char *api_version, *kind, *resource_version, *continue_token;
  int64_t remaining_item_count; /* -1 when absent */
  size_t nitems;                /* items decoded so far */
} kl_list_meta;
kl_list_meta kl_list_decoder_meta(const kl_list_decoder *d);

/* The current error's message ("" when none); borrowed until the next call
 * on d. Never quotes payload bytes. */
const char *kl_list_decoder_error(const kl_list_decoder *d);

/* Drops buffered bytes, held items, metadata and any error. */
void kl_list_decoder_reset(kl_list_decoder *d);

#endif
