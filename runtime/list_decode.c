/* list_decode.c: one-pass list body decoder; see list_decode.h.
 *
 * The engine is a resumable parser for the top-level object only: it walks
 * member keys, and for each member value (or each element of "items") a
 * small structural scanner (depth, in-string, escape) finds where the value
 * ends, so values can span any number of feeds. A complete item goes
 * straight to kl_obj_new, which validates and compacts it: each item byte is
 * scanned twice (boundary, then compaction) and never parsed into a tree.
 * Other members are validated with kl_json_skip and read with json.h.
 * kl_list_decode runs the same engine over the caller's bytes, uncopied. */
#include "list_decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  S_START,       /* expect '{' */
  S_KEY_FIRST,   /* expect a key or '}' */
  S_KEY,         /* expect a key */
  S_COLON,       /* expect ':' */
  S_VALUE,       /* a member value (not items) */
  S_AFTER_VALUE, /* expect ',' or '}' */
  S_ITEMS_START, /* expect '[' or null */
  S_ITEM_FIRST,  /* expect an item or ']' */
  S_ITEM,        /* an item */
  S_AFTER_ITEM,  /* expect ',' or ']' */
  S_DONE,        /* only whitespace may follow */
};

enum { K_OTHER, K_ITEMS, K_KIND, K_APIVERSION, K_METADATA };

struct kl_list_decoder {
  kl_buf buf;        /* streaming: the unconsumed bytes */
  kl_buf scratch;    /* fast_item's compaction buffer, reused */
  const char *data;  /* the bytes being parsed: buf.data or borrowed */
  size_t len;
  bool borrowed;
  size_t pos;        /* parse position in data */
  size_t base;       /* bytes discarded before data[0] (for offsets) */
  int st, key;
  /* value scanner */
  bool in_value, in_str, esc, scalar;
  int depth;
  size_t vstart, vscan;
  size_t max_item;
  /* options and what the list says about itself */
  kl_obj_opts opts;
  char *opt_api, *opt_kind;
  char *api_version, *kind, *item_kind, *rv, *cont;
  int64_t remaining;
  bool seen_items, seen_kind, seen_api;
  /* items ready to hand out (a FIFO), and raw items held back */
  kl_obj **ready;
  size_t rhead, nready, rcap;
  kl_buf *held;
  size_t nheld, hcap;
  size_t nitems;     /* items seen in the body so far */
  int err;
  char *errmsg;
};

static int fail(kl_list_decoder *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(kl_list_decoder *d, int code, const char *fmt, ...) {
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

static void clear_state(kl_list_decoder *d) {
  for (size_t i = d->rhead; i < d->nready; i++) kl_obj_unref(d->ready[i]);
  d->rhead = d->nready = 0;
  for (size_t i = 0; i < d->nheld; i++) kl_buf_free(&d->held[i]);
  d->nheld = 0;
  free(d->api_version);
  free(d->kind);
  free(d->item_kind);
  free(d->rv);
  free(d->cont);
  d->api_version = kl_strdup("");
  d->kind = kl_strdup("");
  d->item_kind = kl_strdup("");
  d->rv = kl_strdup("");
  d->cont = kl_strdup("");
  d->remaining = -1;
  d->seen_items = d->seen_kind = d->seen_api = false;
  d->nitems = 0;
  d->pos = d->base = 0;
  d->st = S_START;
  d->in_value = false;
  d->err = 0;
  free(d->errmsg);
  d->errmsg = kl_strdup("");
}

kl_list_decoder *kl_list_decoder_new(const kl_obj_opts *opts,
                                     size_t max_item) {
  kl_list_decoder *d = kl_calloc(1, sizeof *d);
  if (opts) d->opts = *opts;
  if (opts && opts->api_version)
    d->opts.api_version = d->opt_api = kl_strdup(opts->api_version);
  if (opts && opts->kind) d->opts.kind = d->opt_kind = kl_strdup(opts->kind);
  d->max_item = max_item ? max_item : KL_LIST_DEFAULT_MAX_ITEM;
  clear_state(d);
  return d;
}

void kl_list_decoder_free(kl_list_decoder *d) {
  if (!d) return;
  clear_state(d);
  free(d->ready);
  free(d->held);
  kl_buf_free(&d->buf);
  kl_buf_free(&d->scratch);
  free(d->opt_api);
  free(d->opt_kind);
  free(d->api_version);
  free(d->kind);
  free(d->item_kind);
  free(d->rv);
  free(d->cont);
  free(d->errmsg);
  free(d);
}

void kl_list_decoder_reset(kl_list_decoder *d) {
  clear_state(d);
  if (d->buf.cap > ((size_t)1 << 20)) kl_buf_free(&d->buf);
  d->buf.len = 0;
  d->data = d->buf.data;
  d->len = 0;
}

void kl_list_decoder_feed(kl_list_decoder *d, const char *p, size_t n) {
  if (d->err || d->borrowed || n == 0) return;
  kl_buf_add(&d->buf, p, n);
  d->data = d->buf.data;
  d->len = d->buf.len;
}

/* Streaming: drops the bytes before the first one still needed. */
static void compact(kl_list_decoder *d) {
  if (d->borrowed) return;
  size_t keep = d->in_value ? d->vstart : d->pos;
  if (keep == 0) return;
  size_t rest = d->buf.len - keep;
  memmove(d->buf.data, d->buf.data + keep, rest);
  d->buf.len = rest;
  d->buf.data[rest] = '\0';
  d->pos -= keep;
  if (d->in_value) d->vstart -= keep, d->vscan -= keep;
  d->base += keep;
  if (d->buf.cap > ((size_t)4 << 20) && rest < d->buf.cap / 8) {
    size_t cap = rest + 65536;
    d->buf.data = kl_realloc(d->buf.data, cap);
    d->buf.cap = cap;
  }
  d->data = d->buf.data;
  d->len = d->buf.len;
}

static bool is_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static const char *what(const kl_list_decoder *d) {
  return d->st == S_ITEM ? "list item" : "list member";
}

/* Finds the end of the JSON value starting at data[pos] (not whitespace).
 * Returns 1 and sets [*vs, *ve) when complete (pos moves past it), 0 when
 * more bytes are needed, or an error. Validity is checked by the caller. */
static int scan_value(kl_list_decoder *d, size_t *vs, size_t *ve) {
  const char *b = d->data;
  size_t len = d->len;
  if (!d->in_value) {
    char c = b[d->pos];
    d->in_value = true;
    d->vstart = d->pos;
    d->vscan = d->pos + 1;
    d->depth = (c == '{' || c == '[') ? 1 : 0;
    d->in_str = c == '"';
    d->esc = false;
    d->scalar = !d->depth && !d->in_str;
    if (d->scalar) d->vscan = d->pos;
  }
  size_t i = d->vscan, end = 0;
  bool found = false; /* end may be 0: an empty scalar at the buffer start */
  while (i < len) {
    char c;
    if (d->in_str) {
      if (d->esc) {
        d->esc = false;
        i++;
        continue;
      }
      /* fast path: plain string bytes */
      i = (size_t)(kl_json_plain_run(b + i, b + len) - b);
      if (i == len) break;
      c = b[i++];
      if (c == '\\') {
        d->esc = true;
      } else if (c == '"') {
        d->in_str = false;
        if (d->depth == 0) {
          end = i;
          found = true;
          break;
        }
      } else {
        return fail(d, KL_EJSON,
                    "malformed list body: control byte 0x%02x inside a string "
                    "at byte %zu (%s %zu)",
                    (unsigned char)c, d->base + i - 1, what(d), d->nitems);
      }
      continue;
    }
    c = b[i];
    if (d->scalar) {
      if (c == ',' || c == '}' || c == ']' || c == ':' || is_ws(c)) {
        end = i;
        found = true;
        break;
      }
    } else if (c == '"') {
      d->in_str = true;
    } else if (c == '{' || c == '[') {
      if (++d->depth > KL_JSON_MAX_DEPTH)
        return fail(d, KL_EJSON, "list body nested deeper than %d levels",
                    KL_JSON_MAX_DEPTH);
    } else if (c == '}' || c == ']') {
      if (--d->depth == 0) {
        end = i + 1;
        found = true;
        break;
      }
    }
    i++;
  }
  if (!found) {
    d->vscan = i;
    if (len - d->vstart > d->max_item)
      return fail(d, KL_EPROTO,
                  "%s %zu exceeds the %zu-byte limit (%zu bytes buffered "
                  "without completing it)",
                  what(d), d->nitems, d->max_item, len - d->vstart);
    return 0;
  }
  if (end - d->vstart > d->max_item)
    return fail(d, KL_EPROTO, "%s %zu of %zu bytes exceeds the %zu-byte limit",
                what(d), d->nitems, end - d->vstart, d->max_item);
  d->in_value = false;
  *vs = d->vstart;
  *ve = end;
  d->pos = end;
  return 1;
}

static void push_ready(kl_list_decoder *d, kl_obj *o) {
  if (d->rhead > 0 && d->rhead == d->nready) d->rhead = d->nready = 0;
  if (d->nready == d->rcap) {
    if (d->rhead > 0) { /* reuse the consumed front */
      memmove(d->ready, d->ready + d->rhead,
              (d->nready - d->rhead) * sizeof *d->ready);
      d->nready -= d->rhead;
      d->rhead = 0;
    } else {
      d->rcap = d->rcap ? d->rcap * 2 : 64;
      d->ready = kl_realloc(d->ready, d->rcap * sizeof *d->ready);
    }
  }
  d->ready[d->nready++] = o;
}

static bool inject_known(const kl_list_decoder *d) {
  return (d->seen_kind || d->opt_kind) && (d->seen_api || d->opt_api);
}

/* The options items are created with: the list's item kind and
 * apiVersion, else the caller's. */
static kl_obj_opts item_opts(const kl_list_decoder *d) {
  kl_obj_opts o = d->opts;
  o.api_version = d->api_version[0] ? d->api_version : d->opt_api;
  o.kind = d->item_kind[0] ? d->item_kind : d->opt_kind;
  return o;
}

/* Creates the kl_obj of item idx from raw JSON and queues it. */
static int make_item(kl_list_decoder *d, const char *p, size_t n, size_t idx) {
  kl_obj_opts o = item_opts(d);
  kl_obj *obj = NULL;
  char *e = NULL;
  int rc = kl_obj_new(p, n, &o, &obj, &e);
  if (rc != 0) {
    fail(d, rc, "list item %zu (%zu bytes): %s", idx, n,
         e ? e : kl_strerror(rc));
    free(e);
    return rc;
  }
  push_ready(d, obj);
  return 0;
}

static int flush_held(kl_list_decoder *d) {
  size_t first = d->nitems - d->nheld;
  for (size_t i = 0; i < d->nheld; i++) {
    int rc = d->err ? d->err
                    : make_item(d, d->held[i].data, d->held[i].len, first + i);
    kl_buf_free(&d->held[i]);
    if (rc < 0) {
      for (size_t j = i + 1; j < d->nheld; j++) kl_buf_free(&d->held[j]);
      d->nheld = 0;
      return rc;
    }
  }
  d->nheld = 0;
  return 0;
}

enum { FAST_WINDOW = 1 << 20 }; /* how far fast_item looks ahead */

/* Fast path for an item that starts at pos: when its bytes are all
 * buffered (most items), decoding it finds its end, so the framing scan
 * is skipped. Returns 1 when the item was queued; 0 when it must go the
 * framed way: not complete yet, held (kind unknown so far), over the size
 * limit or bad (the framed path then reports it as before). */
static int fast_item(kl_list_decoder *d) {
  if (d->nheld > 0 || !inject_known(d) || d->data[d->pos] != '{') return 0;
  kl_obj_opts o = item_opts(d);
  const char *p = d->data + d->pos, *after = NULL;
  kl_obj *obj = NULL;
  /* the window bounds the scratch buffer (sized to it); a bigger item
   * takes the framed path */
  size_t window = d->len - d->pos;
  if (window > FAST_WINDOW) window = FAST_WINDOW;
  if (kl_obj_new_prefix(p, window, &o, &obj, NULL, &after, &d->scratch) != 0)
    return 0;
  if ((size_t)(after - p) > d->max_item) {
    kl_obj_unref(obj);
    return 0;
  }
  d->nitems++;
  d->pos += (size_t)(after - p);
  push_ready(d, obj);
  return 1;
}

/* A complete item [p, p+n): create it now, or hold it until the list's
 * kind is known. Returns 1 when an item was queued, 0 when held, or error. */
static int on_item(kl_list_decoder *d, const char *p, size_t n) {
  size_t idx = d->nitems++;
  if (d->nheld == 0 && !inject_known(d)) {
    kl_span s = {p, n}, v;
    if (kl_json_get(s, "kind", &v) && kl_json_get(s, "apiVersion", &v)) {
      int rc = make_item(d, p, n, idx);
      return rc < 0 ? rc : 1;
    }
  }
  if (d->nheld > 0 || !inject_known(d)) {
    if (d->nheld == d->hcap) {
      d->hcap = d->hcap ? d->hcap * 2 : 16;
      d->held = kl_realloc(d->held, d->hcap * sizeof *d->held);
    }
    kl_buf *h = &d->held[d->nheld++];
    *h = (kl_buf)KL_BUF_INIT;
    kl_buf_add(h, p, n);
    return 0;
  }
  int rc = make_item(d, p, n, idx);
  return rc < 0 ? rc : 1;
}

/* A NEW copy of a string value; "" when not a string. */
static char *member_str(kl_span v) {
  char *s = kl_json_strdup(v);
  return s ? s : kl_strdup("");
}

/* Interprets a top-level member other than items. */
static int on_member(kl_list_decoder *d, kl_span v) {
  switch (d->key) {
  case K_KIND: {
    free(d->kind);
    d->kind = member_str(v);
    size_t n = strlen(d->kind);
    free(d->item_kind);
    d->item_kind = (n > 4 && strcmp(d->kind + n - 4, "List") == 0)
                       ? kl_strndup(d->kind, n - 4)
                       : kl_strdup("");
    d->seen_kind = true;
    break;
  }
  case K_APIVERSION:
    free(d->api_version);
    d->api_version = member_str(v);
    d->seen_api = true;
    break;
  case K_METADATA: {
    if (kl_json_type(v) != 'o') break;
    kl_span m;
    if (kl_json_get(v, "resourceVersion", &m)) {
      free(d->rv);
      d->rv = member_str(m);
    }
    if (kl_json_get(v, "continue", &m)) {
      free(d->cont);
      d->cont = member_str(m);
    }
    if (kl_json_get(v, "remainingItemCount", &m) && kl_json_type(m) == 'n' &&
        m.n < 32) {
      char tmp[32];
      memcpy(tmp, m.p, m.n);
      tmp[m.n] = '\0';
      char *e;
      long long x = strtoll(tmp, &e, 10);
      if (*e == '\0' && x >= 0) d->remaining = x;
    }
    break;
  }
  default:
    break;
  }
  if ((d->key == K_KIND || d->key == K_APIVERSION) && d->nheld > 0 &&
      inject_known(d))
    return flush_held(d);
  return 0;
}

/* Parses as far as the bytes go. Returns 1 when at least one item was
 * queued, 0 when more bytes are needed (or the list is done), or error. */
static int advance(kl_list_decoder *d) {
  for (;;) {
    const char *b = d->data;
    if (!d->in_value) {
      while (d->pos < d->len && is_ws(b[d->pos])) d->pos++;
      if (d->pos == d->len) return 0;
    }
    char c = b[d->pos];
    size_t at = d->base + d->pos, vs, ve;
    int rc;
    switch (d->st) {
    case S_START:
      if (c != '{')
        return fail(d, KL_EJSON,
                    "malformed list body: not a JSON object (starts with byte "
                    "0x%02x)", (unsigned char)c);
      d->pos++;
      d->st = S_KEY_FIRST;
      break;
    case S_KEY_FIRST:
      if (c == '}') {
        d->pos++;
        d->st = S_DONE;
        break;
      }
      /* fall through */
    case S_KEY:
      if (!d->in_value && c != '"')
        return fail(d, KL_EJSON,
                    "malformed list body: expected a member name at byte %zu",
                    at);
      if ((rc = scan_value(d, &vs, &ve)) <= 0) return rc;
      {
        kl_span k = {b + vs, ve - vs};
        const char *after;
        if (kl_json_skip(k.p, k.p + k.n, &after) != 0)
          return fail(d, KL_EJSON,
                      "malformed list body: bad member name at byte %zu",
                      d->base + vs);
        d->key = kl_json_streq(k, "items")        ? K_ITEMS
                 : kl_json_streq(k, "kind")       ? K_KIND
                 : kl_json_streq(k, "apiVersion") ? K_APIVERSION
                 : kl_json_streq(k, "metadata")   ? K_METADATA
                                                  : K_OTHER;
      }
      d->st = S_COLON;
      break;
    case S_COLON:
      if (c != ':')
        return fail(d, KL_EJSON, "malformed list body: expected ':' at byte %zu",
                    at);
      d->pos++;
      d->st = d->key == K_ITEMS ? S_ITEMS_START : S_VALUE;
      break;
    case S_VALUE:
      if ((rc = scan_value(d, &vs, &ve)) <= 0) return rc;
      {
        const char *after;
        if (kl_json_skip(b + vs, b + ve, &after) != 0 || after != b + ve)
          return fail(d, KL_EJSON,
                      "malformed list body: bad value of %zu bytes at byte %zu",
                      ve - vs, d->base + vs);
        if ((rc = on_member(d, (kl_span){b + vs, ve - vs})) < 0) return rc;
      }
      d->st = S_AFTER_VALUE;
      break;
    case S_AFTER_VALUE:
      if (c != ',' && c != '}')
        return fail(d, KL_EJSON,
                    "malformed list body: expected ',' or '}' at byte %zu", at);
      d->pos++;
      d->st = c == ',' ? S_KEY : S_DONE;
      break;
    case S_ITEMS_START:
      if (c == '[') {
        d->pos++;
        d->seen_items = true;
        d->st = S_ITEM_FIRST;
      } else if (c == 'n' || d->in_value) {
        if ((rc = scan_value(d, &vs, &ve)) <= 0) return rc;
        if (ve - vs != 4 || memcmp(b + vs, "null", 4) != 0)
          return fail(d, KL_EJSON,
                      "malformed list body: \"items\" is not an array (byte "
                      "%zu)", d->base + vs);
        d->seen_items = true;
        d->st = S_AFTER_VALUE;
      } else {
        return fail(d, KL_EPROTO,
                    "list body: \"items\" is not an array (byte %zu)", at);
      }
      break;
    case S_ITEM_FIRST:
      if (c == ']') {
        d->pos++;
        d->st = S_AFTER_VALUE;
        break;
      }
      d->st = S_ITEM;
      /* fall through */
    case S_ITEM:
      if (!d->in_value && fast_item(d)) {
        d->st = S_AFTER_ITEM;
        return 1;
      }
      if ((rc = scan_value(d, &vs, &ve)) <= 0) return rc;
      d->st = S_AFTER_ITEM;
      if ((rc = on_item(d, b + vs, ve - vs)) != 0) return rc;
      break;
    case S_AFTER_ITEM:
      if (c != ',' && c != ']')
        return fail(d, KL_EJSON,
                    "malformed list body: expected ',' or ']' after item %zu "
                    "at byte %zu", d->nitems - 1, at);
      d->pos++;
      d->st = c == ',' ? S_ITEM : S_AFTER_VALUE;
      break;
    case S_DONE:
    default:
      return fail(d, KL_EJSON,
                  "malformed list body: unexpected bytes after the list (byte "
                  "%zu)", at);
    }
  }
}

int kl_list_decoder_next(kl_list_decoder *d, kl_obj **item) {
  *item = NULL;
  for (;;) {
    if (d->rhead < d->nready) {
      *item = d->ready[d->rhead++];
      return 1;
    }
    if (d->err) return d->err;
    int rc = advance(d);
    if (rc < 0) return rc;
    if (rc == 0 && d->rhead == d->nready) { /* held items may have been */
      compact(d);                          /* released along the way */
      return 0;
    }
  }
}

int kl_list_decoder_finish(kl_list_decoder *d) {
  int rc;
  while (!d->err && (rc = advance(d)) == 1) {
  }
  if (d->err) return d->err;
  if (d->st != S_DONE)
    return fail(d, KL_EPROTO,
                "list body ended early (%zu bytes, %zu items so far%s)",
                d->base + d->len, d->nitems,
                d->in_value && d->st == S_ITEM ? ", inside an item" : "");
  if (!d->seen_items)
    return fail(d, KL_EPROTO,
                "not a list: the body has no \"items\" (kind %.64s)",
                d->kind[0] ? d->kind : "(none)");
  return flush_held(d);
}

kl_list_meta kl_list_decoder_meta(const kl_list_decoder *d) {
  kl_list_meta m = {d->api_version, d->kind, d->rv, d->cont, d->remaining,
                    d->nitems - d->nheld};
  return m;
}

const char *kl_list_decoder_error(const kl_list_decoder *d) {
  return d->err ? d->errmsg : "";
}

void kl_list_free(kl_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->nitems; i++) kl_obj_unref(l->items[i]);
  free(l->items);
  free(l->api_version);
  free(l->kind);
  free(l->resource_version);
  free(l->continue_token);
  memset(l, 0, sizeof *l);
}

int kl_list_decode(const char *body, size_t n, const kl_obj_opts *opts,
                   kl_list *out, char **err) {
  memset(out, 0, sizeof *out);
  if (err) *err = NULL;
  kl_list_decoder *d = kl_list_decoder_new(opts, 0);
  d->borrowed = true;
  d->data = body;
  d->len = n;
  size_t cap = 0;
  kl_obj *item;
  int rc;
  for (int pass = 0; pass < 2; pass++) {
    while ((rc = kl_list_decoder_next(d, &item)) == 1) {
      if (out->nitems == cap) {
        cap = cap ? cap * 2 : 64;
        out->items = kl_realloc(out->items, cap * sizeof *out->items);
      }
      out->items[out->nitems++] = item;
    }
    if (rc == 0 && pass == 0) rc = kl_list_decoder_finish(d);
    if (rc < 0) {
      if (err) *err = kl_strdup(d->errmsg);
      kl_list_free(out);
      kl_list_decoder_free(d);
      return rc;
    }
  }
  out->api_version = kl_strdup(d->api_version);
  out->kind = kl_strdup(d->kind);
  out->resource_version = kl_strdup(d->rv);
  out->continue_token = kl_strdup(d->cont);
  out->remaining_item_count = d->remaining;
  kl_list_decoder_free(d);
  return 0;
}
