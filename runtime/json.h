/* json.h: a fast, validating JSON scanner over raw bytes. It builds no tree:
 * it skips values, finds members by path, iterates objects and arrays, and
 * copies a value compacted (whitespace removed, chosen members dropped).
 * Used on the hot path (every object ingested, every index computed).
 * Thread-safety: pure functions over caller-owned bytes. */
#ifndef KL_JSON_H
#define KL_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "kl.h"

/* A borrowed slice of JSON text (a whole value, e.g. "\"x\"" or "{...}"). */
typedef struct kl_span {
  const char *p;
  size_t n;
} kl_span;

/* Nesting deeper than this is rejected as malformed (stack safety). */
#define KL_JSON_MAX_DEPTH 256

/* Validates one JSON value starting at p (leading whitespace allowed) and
 * sets *end just after it. Returns 0 or KL_EJSON. */
int kl_json_skip(const char *p, const char *end, const char **after);

/* Validates that [p, p+n) holds exactly one JSON value (plus whitespace). */
int kl_json_validate(const char *p, size_t n);

/* Copies the value in [p, p+n) into out without insignificant whitespace.
 * drop: NULL or a NULL-terminated list of dotted member paths to leave out,
 * relative to the top-level object (e.g. "metadata.managedFields").
 * Validates while copying; returns 0 or KL_EJSON (out then holds garbage). */
int kl_json_compact(const char *p, size_t n, const char *const *drop,
                    kl_buf *out);

/* Top-level members noted by kl_json_compact_capture in the same pass: for
 * each name in keys (NULL-terminated, at most KL_JSON_CAPTURE_MAX), where
 * the value of its first occurrence landed in the output, as an offset
 * from the start of the compacted value, and its length (0: absent). A
 * top-level key written with escapes is never matched and sets escaped:
 * the caller must then look members up itself. */
#define KL_JSON_CAPTURE_MAX 4
typedef struct kl_json_capture {
  const char *keys[KL_JSON_CAPTURE_MAX];
  size_t off[KL_JSON_CAPTURE_MAX], len[KL_JSON_CAPTURE_MAX];
  bool escaped;
} kl_json_capture;

/* kl_json_compact, also filling cap (NULL: none) for a top-level object.
 * Returns 0 or KL_EJSON (cap then meaningless). */
int kl_json_compact_capture(const char *p, size_t n, const char *const *drop,
                            kl_buf *out, kl_json_capture *cap);

/* Like kl_json_compact for the one value starting at p (leading whitespace
 * allowed) and ending anywhere before end: appends it to out, compacted and
 * validated in the same single pass, and sets *after just past it. Returns
 * 0 or KL_EJSON (out then holds garbage after its old length). */
int kl_json_compact_value(const char *p, const char *end,
                          const char *const *drop, kl_buf *out,
                          const char **after);

/* kl_json_compact_value, also filling cap (NULL: none) as
 * kl_json_compact_capture does. */
int kl_json_compact_value_capture(const char *p, const char *end,
                                  const char *const *drop, kl_buf *out,
                                  const char **after, kl_json_capture *cap);

/* Skips one value of JSON already known to be valid (e.g. a kl_obj's bytes)
 * without checking it; returns the byte after it. On invalid input it still
 * never reads outside [p, end) and always moves forward (the result is then
 * meaningless). */
const char *kl_json_skip_valid(const char *p, const char *end);

/* Returns the first byte in [p, end) that is '"', '\\' or a control byte
 * (< 0x20), or end: the run of plain string bytes. Reads 8 bytes at a time. */
const char *kl_json_plain_run(const char *p, const char *end);

/* The kind of a value by its first byte: 'o' object, 'a' array, 's' string,
 * 'n' number, 't' true, 'f' false, 'z' null, 0 if empty/invalid. */
char kl_json_type(kl_span v);

/* Finds the member at a dotted path ("metadata.name") inside the object
 * span obj. The span must be valid JSON (e.g. from kl_json_compact). Returns
 * true and sets *out when found. Path components cannot contain dots; use
 * kl_json_getv for those. */
bool kl_json_get(kl_span obj, const char *path, kl_span *out);
bool kl_json_getv(kl_span obj, const char *const *keys, int nkeys,
                  kl_span *out);

/* Iterates members of an object or elements of an array (valid JSON).
 *   kl_json_iter it; kl_json_iter_init(&it, span);
 *   while (kl_json_next(&it, &key, &val)) ...
 * For arrays key is left empty. */
typedef struct kl_json_iter {
  const char *p, *end;
  char kind;
} kl_json_iter;
void kl_json_iter_init(kl_json_iter *it, kl_span v);
bool kl_json_next(kl_json_iter *it, kl_span *key, kl_span *val);

/* Decodes a JSON string value (with quotes) into out (appended, unescaped,
 * NUL-terminated). Returns 0 or KL_EJSON. */
int kl_json_unescape(kl_span str, kl_buf *out);
/* Like kl_json_unescape but returns a NEW C string (free it), or NULL when
 * the span is not a string. */
char *kl_json_strdup(kl_span str);
/* True when the string span equals the C string s (handles escapes). */
bool kl_json_streq(kl_span str, const char *s);

/* Appends s as a JSON string literal (quoted, escaped) to out. */
void kl_json_quote(kl_buf *out, const char *s, size_t n);

#endif
