/* watch_decode.c: incremental watch stream decoder; see watch_decode.h.
 *
 * Framing: the API server writes each event as one compact JSON object and
 * a '\n', but Go's json.Decoder (client-go's framer) reads a stream of
 * concatenated values, so event boundaries are found by scanning: a small
 * resumable state machine (depth, in-string, escape) finds the byte that
 * closes the top-level object in O(n) over all feeds; the complete event is
 * then validated and decoded with the json.h scanner. An event whose bytes
 * are all buffered when it starts (most of them) skips the framing scan:
 * decoding it finds its end. A raw newline followed
 * by '{' while an event is still open means that event was cut short (the
 * server never emits raw newlines inside an event; a pretty-printed event's
 * inner lines are indented), so a truncated event is reported when the next
 * one starts instead of swallowing it. */
#include "watch_decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kl_watch_decoder {
  kl_buf buf;
  size_t off;      /* start of the bytes not yet consumed */
  /* scanning state of the current (incomplete) event */
  bool in_event, in_str, esc;
  int depth;
  size_t ev_start; /* index of the event's '{' */
  size_t scan;     /* next byte to scan */
  size_t max_event;
  kl_obj_opts opts;
  char *api_version, *kind;
  kl_buf obj;      /* the current event's object, compacted */
  int err;
  char *errmsg;
};

static const char *const type_names[] = {
    NULL, "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR",
};

const char *kl_watch_type_name(kl_watch_type t) {
  if (t >= KL_WATCH_ADDED && t <= KL_WATCH_ERROR) return type_names[t];
  return "?";
}

kl_watch_decoder *kl_watch_decoder_new(const kl_obj_opts *opts,
                                       size_t max_event) {
  kl_watch_decoder *d = kl_calloc(1, sizeof *d);
  if (opts) d->opts = *opts;
  if (opts && opts->api_version)
    d->opts.api_version = d->api_version = kl_strdup(opts->api_version);
  if (opts && opts->kind) d->opts.kind = d->kind = kl_strdup(opts->kind);
  d->max_event = max_event ? max_event : KL_WATCH_DEFAULT_MAX_EVENT;
  d->errmsg = kl_strdup("");
  return d;
}

void kl_watch_decoder_free(kl_watch_decoder *d) {
  if (!d) return;
  kl_buf_free(&d->buf);
  kl_buf_free(&d->obj);
  free(d->api_version);
  free(d->kind);
  free(d->errmsg);
  free(d);
}

static int fail(kl_watch_decoder *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(kl_watch_decoder *d, int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  free(d->errmsg);
  d->errmsg = kl_strdup(msg);
  d->err = code;
  return code;
}

void kl_watch_decoder_feed(kl_watch_decoder *d, const char *p, size_t n) {
  if (d->err || n == 0) return;
  kl_buf_add(&d->buf, p, n);
}

/* Moves the unconsumed bytes to the front of the buffer. */
static void compact(kl_watch_decoder *d) {
  if (d->off == 0) return;
  size_t rest = d->buf.len - d->off;
  memmove(d->buf.data, d->buf.data + d->off, rest);
  d->buf.len = rest;
  d->buf.data[rest] = '\0';
  if (d->in_event) {
    d->ev_start -= d->off;
    d->scan -= d->off;
  }
  d->off = 0;
  /* give back the memory of a huge event once it is gone */
  if (d->buf.cap > ((size_t)4 << 20) && rest < d->buf.cap / 8) {
    size_t cap = rest + 65536;
    d->buf.data = kl_realloc(d->buf.data, cap);
    d->buf.cap = cap;
  }
}

static bool is_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Copies at most 64 bytes of a short JSON string for a message. */
static void short_str(kl_span s, char *out, size_t cap) {
  kl_buf b = KL_BUF_INIT;
  if (kl_json_type(s) != 's' || kl_json_unescape(s, &b) != 0) {
    snprintf(out, cap, "(not a string)");
  } else {
    snprintf(out, cap, "%.64s%s", b.data, b.len > 64 ? "..." : "");
  }
  kl_buf_free(&b);
}

/* One validating pass over the event envelope starting at p ('{') and
 * closed by a '}' before end: every member is checked, and the "object"
 * member is validated and compacted (managedFields dropped) into d->obj in
 * the same pass, so kl_obj_new takes those bytes as they are. Returns 0
 * and sets *closed past the closing '}', or -1 when [p, end) does not
 * start with one whole valid envelope (malformed, or not all there yet). */
static int parse_envelope(kl_watch_decoder *d, const char *p, const char *end,
                          kl_span *type, kl_span *object, bool *compacted,
                          const char **closed) {
  const char *q = p + 1;
  *type = *object = (kl_span){0};
  *compacted = false;
  d->obj.len = 0;
  for (bool first = true;; first = false) {
    while (q < end && is_ws(*q)) q++;
    if (first && q < end && *q == '}') break;
    const char *ks = q, *after;
    if (q >= end || *q != '"' || kl_json_skip(q, end, &after) != 0) return -1;
    kl_span key = {ks, (size_t)(after - ks)};
    q = after;
    while (q < end && is_ws(*q)) q++;
    if (q >= end || *q != ':') return -1;
    q++;
    while (q < end && is_ws(*q)) q++;
    if (!object->p && kl_json_streq(key, "object")) {
      if (q < end && *q == '{') {
        if (kl_json_compact_value(q, end, d->opts.drop, &d->obj, &after) != 0)
          return -1;
        *compacted = true;
      } else if (kl_json_skip(q, end, &after) != 0) {
        return -1;
      }
      *object = (kl_span){q, (size_t)(after - q)};
    } else {
      if (kl_json_skip(q, end, &after) != 0) return -1;
      if (!type->p && kl_json_streq(key, "type"))
        *type = (kl_span){q, (size_t)(after - q)};
    }
    q = after;
    while (q < end && is_ws(*q)) q++;
    if (q < end && *q == ',') {
      q++;
      continue;
    }
    if (q < end && *q == '}') break;
    return -1;
  }
  *closed = q + 1;
  return 0;
}

/* The event from a parsed envelope of n bytes into *ev. Returns 1 or an
 * error. */
static int finish_event(kl_watch_decoder *d, kl_span type, kl_span object,
                        bool compacted, size_t n, kl_watch_event *ev) {
  if (!type.p)
    return fail(d, KL_EPROTO, "watch event has no \"type\" (%zu bytes)", n);
  if (kl_json_type(type) != 's')
    return fail(d, KL_EPROTO, "watch event \"type\" is not a string");
  kl_watch_type t = 0;
  for (int i = KL_WATCH_ADDED; i <= KL_WATCH_ERROR; i++)
    if (kl_json_streq(type, type_names[i])) t = (kl_watch_type)i;
  if (!t) {
    char s[80];
    short_str(type, s, sizeof s);
    return fail(d, KL_EPROTO, "unknown watch event type \"%s\"", s);
  }
  if (!object.p || kl_json_type(object) != 'o')
    return fail(d, KL_EPROTO,
                "watch %s event has no \"object\" (or it is not a JSON "
                "object; %zu bytes)",
                type_names[t], n);

  memset(ev, 0, sizeof *ev);
  if (t == KL_WATCH_ERROR) {
    char *e = NULL;
    if (kl_status_decode(object.p, object.n, &ev->status, &e) != 0) {
      fail(d, KL_EPROTO, "watch ERROR event: %s", e ? e : "bad Status");
      free(e);
      return d->err;
    }
    ev->type = t;
    return 1;
  }
  kl_obj_opts o = d->opts;
  if (t == KL_WATCH_BOOKMARK) o.allow_unnamed = true;
  o.compacted = compacted; /* validated and compacted above */
  char *e = NULL;
  int rc = kl_obj_new(d->obj.data, d->obj.len, &o, &ev->obj, &e);
  if (rc != 0) {
    char kind[80] = "(none)";
    kl_span k;
    if (kl_json_get(object, "kind", &k)) short_str(k, kind, sizeof kind);
    fail(d, rc, "watch %s event: %s (object kind %s, %zu bytes)%s",
         type_names[t], e ? e : kl_strerror(rc), kind, object.n,
         strcmp(kind, "Table") == 0
             ? "; a Table watch (as=Table): set allow_unnamed to accept it"
             : "");
    free(e);
    return rc;
  }
  ev->type = t;
  return 1;
}

/* Decodes one complete event [p, p+n) (it starts with '{' and ends with
 * the '}' that closes it). */
static int decode_event(kl_watch_decoder *d, const char *p, size_t n,
                        kl_watch_event *ev) {
  kl_span type, object;
  bool compacted;
  const char *closed;
  if (parse_envelope(d, p, p + n, &type, &object, &compacted, &closed) != 0 ||
      closed != p + n)
    return fail(d, KL_EJSON, "malformed JSON in watch event (%zu bytes)", n);
  return finish_event(d, type, object, compacted, n, ev);
}

int kl_watch_decoder_next(kl_watch_decoder *d, kl_watch_event *ev) {
  memset(ev, 0, sizeof *ev);
  if (d->err) return d->err;
  char *b = d->buf.data;
  size_t len = d->buf.len;
  if (!d->in_event) {
    while (d->off < len && is_ws(b[d->off])) d->off++;
    if (d->off == len) {
      compact(d);
      return 0;
    }
    if (b[d->off] != '{') {
      const char *nl = memchr(b + d->off, '\n', len - d->off);
      size_t linelen = nl ? (size_t)(nl - (b + d->off)) : len - d->off;
      return fail(d, KL_EJSON,
                  "malformed watch stream: an event must be a JSON object "
                  "but starts with byte 0x%02x (%s%zu bytes%s)",
                  (unsigned char)b[d->off], nl ? "" : "at least ", linelen,
                  nl ? " up to the next newline" : " buffered");
    }
    /* Fast path: most events are all there already, so decode straight
     * away; the decode finds where the event ends. Only an event not
     * complete yet (or malformed, or spread over several lines) goes
     * through the framing scan below, whose verdict stands. */
    kl_span type, object;
    bool compacted;
    const char *at = b + d->off, *closed;
    if (parse_envelope(d, at, b + len, &type, &object, &compacted,
                       &closed) == 0 &&
        !memchr(at, '\n', (size_t)(closed - at))) {
      size_t n = (size_t)(closed - at);
      if (n > d->max_event)
        return fail(d, KL_EPROTO, "watch event of %zu bytes exceeds the "
                    "%zu-byte limit", n, d->max_event);
      d->off += n;
      int rc = finish_event(d, type, object, compacted, n, ev);
      if (rc < 0) memset(ev, 0, sizeof *ev);
      return rc;
    }
    d->in_event = true;
    d->ev_start = d->off;
    d->scan = d->off + 1;
    d->depth = 1;
    d->in_str = d->esc = false;
  }

  size_t i = d->scan, end = 0;
  for (; i < len; i++) {
    if (d->in_str && !d->esc) {
      i = (size_t)(kl_json_plain_run(b + i, b + len) - b);
      if (i == len) break;
    }
    char c = b[i];
    if (d->in_str) {
      if (d->esc) {
        d->esc = false;
      } else if (c == '\\') {
        d->esc = true;
      } else if (c == '"') {
        d->in_str = false;
      } else if ((unsigned char)c < 0x20) {
        return fail(d, KL_EJSON,
                    "truncated or malformed watch event: control byte 0x%02x "
                    "inside a string after %zu bytes of the event",
                    (unsigned char)c, i - d->ev_start);
      }
      continue;
    }
    switch (c) {
    case '"':
      d->in_str = true;
      break;
    case '{':
    case '[':
      if (++d->depth > KL_JSON_MAX_DEPTH)
        return fail(d, KL_EJSON, "watch event nested deeper than %d levels",
                    KL_JSON_MAX_DEPTH);
      break;
    case '}':
    case ']':
      if (--d->depth == 0) end = i + 1;
      break;
    case '\n':
      if (i + 1 == len) goto need_more; /* decide when the next byte comes */
      if (b[i + 1] == '{')
        return fail(d, KL_EJSON,
                    "truncated watch event: %zu bytes of an unfinished event, "
                    "then a new line starting with '{'",
                    i - d->ev_start);
      break;
    default:
      break;
    }
    if (end) break;
  }
  if (!end) {
  need_more:
    d->scan = i;
    if (len - d->ev_start > d->max_event)
      return fail(d, KL_EPROTO,
                  "watch event exceeds the %zu-byte limit (%zu bytes "
                  "buffered without completing it)",
                  d->max_event, len - d->ev_start);
    compact(d);
    return 0;
  }
  size_t n = end - d->ev_start;
  if (n > d->max_event)
    return fail(d, KL_EPROTO, "watch event of %zu bytes exceeds the %zu-byte "
                "limit", n, d->max_event);
  d->in_event = false;
  d->off = end;
  int rc = decode_event(d, b + d->ev_start, n, ev);
  if (rc < 0) memset(ev, 0, sizeof *ev);
  return rc;
}

int kl_watch_decoder_finish(kl_watch_decoder *d) {
  if (d->err) return d->err;
  size_t i = d->in_event ? d->ev_start : d->off;
  while (i < d->buf.len && is_ws(d->buf.data[i])) i++;
  if (i < d->buf.len)
    return fail(d, KL_EPROTO,
                "watch stream ended inside an event (%zu bytes buffered)",
                d->buf.len - i);
  return 0;
}

const char *kl_watch_decoder_error(const kl_watch_decoder *d) {
  return d->err ? d->errmsg : "";
}

void kl_watch_decoder_reset(kl_watch_decoder *d) {
  if (d->buf.cap > ((size_t)1 << 20)) {
    kl_buf_free(&d->buf);
  } else {
    d->buf.len = 0;
    if (d->buf.data) d->buf.data[0] = '\0';
  }
  d->off = 0;
  d->in_event = d->in_str = d->esc = false;
  d->depth = 0;
  d->err = 0;
  free(d->errmsg);
  d->errmsg = kl_strdup("");
}

size_t kl_watch_decoder_buffered(const kl_watch_decoder *d) {
  return d->buf.len - d->off;
}

void kl_watch_event_clear(kl_watch_event *ev) {
  if (!ev) return;
  kl_obj_unref(ev->obj);
  kl_status_free(&ev->status);
  memset(ev, 0, sizeof *ev);
}
