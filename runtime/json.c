/* json.c: validating JSON scanner; see json.h. Recursion is bounded by
 * KL_JSON_MAX_DEPTH so hostile input cannot exhaust the stack. */
#include "json.h"

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static inline const char *ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

static inline int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const char *kl_json_plain_run(const char *p, const char *end) {
#ifdef __SSE2__
  /* 16 bytes at a time: one compare per special class, one mask; the
   * first special byte is the lowest set bit. (SSE2 is part of x86-64.) */
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                ctl = _mm_set1_epi8(0x1f);
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i hit = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
        _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)); /* v <= 0x1f */
    unsigned m = (unsigned)_mm_movemask_epi8(hit);
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
#endif
  /* 8 bytes at a time: a byte is special when it is '"', '\\' or < 0x20
   * (SWAR zero-byte tests; a hit only sends us to the byte loop). */
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  while (end - p >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
    uint64_t m = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v);
    if (m & highs) break;
    p += 8;
  }
  while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
  return p;
}

/* Scans a string starting at the opening quote; returns the byte after the
 * closing quote, or NULL. */
static const char *scan_string(const char *p, const char *end) {
  p++;
  for (;;) {
    p = kl_json_plain_run(p, end);
    if (p >= end) return NULL;
    if (*p == '"') return p + 1;
    if ((unsigned char)*p < 0x20) return NULL;
    p++; /* backslash */
    if (p >= end) return NULL;
    switch (*p) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
    case 't':
      p++;
      break;
    case 'u':
      if (end - p < 5) return NULL;
      for (int i = 1; i <= 4; i++)
        if (hexval(p[i]) < 0) return NULL;
      p += 5;
      break;
    default:
      return NULL;
    }
  }
}

static const char *scan_number(const char *p, const char *end) {
  if (p < end && *p == '-') p++;
  if (p >= end) return NULL;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < end && *p >= '0' && *p <= '9') p++;
  } else {
    return NULL;
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || *p < '0' || *p > '9') return NULL;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return NULL;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  return p;
}

static const char *scan_lit(const char *p, const char *end, const char *lit,
                            size_t n) {
  if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0) return NULL;
  return p + n;
}

/* The validating (and, when out is set, compacting) scanner. Compaction
 * copies runs: [run, p) of the input is pending output, and only where
 * bytes are left out (whitespace, a dropped member) is the pending run
 * copied and a new one started, so compact input costs one memcpy per
 * dropped member instead of one append per token. The output is never
 * longer than the input. drop paths are matched per level: drops[i] is the
 * remaining path of candidate i at this depth. */
typedef struct {
  char *out;       /* output cursor; NULL: validate only */
  const char *run; /* start of the pending input run */
  const char *end;
  char *start;         /* where the output of this value begins */
  kl_json_capture *cap; /* top-level members to note, or NULL */
} cctx;

/* Where input byte x (at or after the pending run's start) lands in the
 * output, counted from the output's start. */
static inline size_t out_at(const cctx *c, const char *x) {
  return (size_t)(c->out - c->start) + (size_t)(x - c->run);
}

/* A top-level key [kp, kp+kn) (raw bytes between the quotes): the index
 * of the capture slot it fills, or -1. */
static int capture_slot(kl_json_capture *cap, const char *kp, size_t kn) {
  if (memchr(kp, '\\', kn)) {
    cap->escaped = true; /* "\u006bind" is "kind": the caller looks */
    return -1;
  }
  for (int i = 0; i < KL_JSON_CAPTURE_MAX && cap->keys[i]; i++)
    if (!cap->len[i] && strlen(cap->keys[i]) == kn &&
        memcmp(cap->keys[i], kp, kn) == 0)
      return i;
  return -1;
}

/* Copies the pending run up to `from` and restarts it at `to`. */
static inline void cut(cctx *c, const char *from, const char *to) {
  if (!c->out) return;
  size_t n = (size_t)(from - c->run);
  memcpy(c->out, c->run, n);
  c->out += n;
  c->run = to;
}

static inline bool is_ws(char ch) {
  return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t';
}

/* Skips whitespace, leaving it out of the output. */
static inline const char *cws(cctx *c, const char *p) {
  if (p < c->end && is_ws(*p)) {
    const char *q = ws(p, c->end);
    cut(c, p, q);
    return q;
  }
  return p;
}

static const char *value(cctx *c, const char *p, int depth,
                         const char *const *drops, int ndrops);

static bool key_matches(const char *kp, size_t kn, const char *path,
                        const char **rest) {
  /* kp/kn: key bytes without quotes (escapes compared raw: Kubernetes keys
   * that we drop never contain escapes). */
  const char *dot = strchr(path, '.');
  size_t pn = dot ? (size_t)(dot - path) : strlen(path);
  if (pn != kn || memcmp(kp, path, kn) != 0) return false;
  *rest = dot ? dot + 1 : "";
  return true;
}

static const char *object(cctx *c, const char *p, int depth,
                          const char *const *drops, int ndrops) {
  const char *end = c->end;
  p = cws(c, p + 1);
  if (p < end && *p == '}') return p + 1;
  bool emitted = false;       /* a member of this object was kept */
  const char *comma = NULL;   /* the ',' before the current member */
  for (;;) {
    p = cws(c, p);
    if (p >= end || *p != '"') return NULL;
    const char *ks = p;
    const char *ke = scan_string(p, end);
    if (!ke) return NULL;
    /* which drop paths continue below this key, and is it dropped here? */
    const char *sub[8];
    int nsub = 0;
    bool dropped = false;
    for (int i = 0; i < ndrops; i++) {
      const char *rest;
      if (key_matches(ks + 1, (size_t)(ke - ks - 2), drops[i], &rest)) {
        if (*rest == '\0') dropped = true;
        else if (nsub < 8) sub[nsub++] = rest;
      }
    }
    char *out = c->out;
    if (dropped || (!emitted && comma)) {
      /* Copy what precedes the key; only whitespace (left out) separates
       * it from the comma before it, so the output then ends with that
       * comma. A dropped member takes its comma along; so does the first
       * kept member after dropped ones. */
      cut(c, ks, ks);
      if (c->out && comma) c->out--;
      out = c->out;
      if (dropped) c->out = NULL; /* skip the rest without output */
    }
    p = cws(c, ke);
    if (p >= end || *p != ':') return NULL;
    p = cws(c, p + 1);
    int slot = depth == 0 && c->cap && c->out && !dropped
                   ? capture_slot(c->cap, ks + 1, (size_t)(ke - ks - 2))
                   : -1;
    size_t vat = slot >= 0 ? out_at(c, p) : 0;
    p = value(c, p, depth + 1, sub, dropped ? 0 : nsub);
    if (!p) return NULL;
    if (slot >= 0) {
      c->cap->off[slot] = vat;
      c->cap->len[slot] = out_at(c, p) - vat;
    }
    if (dropped) {
      c->out = out;
      c->run = p;
    } else {
      emitted = true;
    }
    p = cws(c, p);
    if (p >= end) return NULL;
    if (*p == ',') {
      comma = p++;
      continue;
    }
    if (*p == '}') return p + 1;
    return NULL;
  }
}

static const char *array(cctx *c, const char *p, int depth) {
  const char *end = c->end;
  p = cws(c, p + 1);
  if (p < end && *p == ']') return p + 1;
  for (;;) {
    p = value(c, p, depth + 1, NULL, 0);
    if (!p) return NULL;
    p = cws(c, p);
    if (p >= end) return NULL;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == ']') return p + 1;
    return NULL;
  }
}

static const char *value(cctx *c, const char *p, int depth,
                         const char *const *drops, int ndrops) {
  const char *end = c->end;
  if (depth > KL_JSON_MAX_DEPTH) return NULL;
  p = cws(c, p);
  if (p >= end) return NULL;
  switch (*p) {
  case '{': return object(c, p, depth, drops, ndrops);
  case '[': return array(c, p, depth);
  case '"': return scan_string(p, end);
  case 't': return scan_lit(p, end, "true", 4);
  case 'f': return scan_lit(p, end, "false", 5);
  case 'n': return scan_lit(p, end, "null", 4);
  default: return scan_number(p, end);
  }
}

int kl_json_skip(const char *p, const char *end, const char **after) {
  cctx c = {NULL, p, end, NULL, NULL};
  const char *q = value(&c, p, 0, NULL, 0);
  if (!q) return KL_EJSON;
  if (after) *after = q;
  return 0;
}

int kl_json_validate(const char *p, size_t n) {
  const char *end = p + n, *q;
  if (kl_json_skip(p, end, &q) != 0) return KL_EJSON;
  return ws(q, end) == end ? 0 : KL_EJSON;
}

static int compact_value(const char *p, const char *end,
                         const char *const *drop, kl_buf *out,
                         const char **after, kl_json_capture *cap) {
  int nd = 0;
  while (drop && drop[nd] && nd < 8) nd++;
  kl_buf_reserve(out, (size_t)(end - p));
  char *start = out->data + out->len;
  p = ws(p, end); /* leading whitespace is not part of the value */
  if (cap) {
    cap->escaped = false;
    for (int i = 0; i < KL_JSON_CAPTURE_MAX; i++) cap->off[i] = cap->len[i] = 0;
  }
  cctx c = {start, p, end, start, cap};
  const char *q = value(&c, p, 0, drop, nd);
  if (!q) return KL_EJSON;
  cut(&c, q, q);
  out->len += (size_t)(c.out - start);
  out->data[out->len] = '\0';
  if (after) *after = q;
  return 0;
}

int kl_json_compact_value(const char *p, const char *end,
                          const char *const *drop, kl_buf *out,
                          const char **after) {
  return compact_value(p, end, drop, out, after, NULL);
}

int kl_json_compact_value_capture(const char *p, const char *end,
                                  const char *const *drop, kl_buf *out,
                                  const char **after, kl_json_capture *cap) {
  return compact_value(p, end, drop, out, after, cap);
}

int kl_json_compact(const char *p, size_t n, const char *const *drop,
                    kl_buf *out) {
  return kl_json_compact_capture(p, n, drop, out, NULL);
}

int kl_json_compact_capture(const char *p, size_t n, const char *const *drop,
                            kl_buf *out, kl_json_capture *cap) {
  const char *end = p + n, *q;
  if (compact_value(p, end, drop, out, &q, cap) != 0) return KL_EJSON;
  return ws(q, end) == end ? 0 : KL_EJSON;
}

const char *kl_json_skip_valid(const char *p, const char *end) {
  p = ws(p, end);
  if (p >= end) return end;
  char ch = *p;
  if (ch == '"') {
    for (p++;;) {
      p = kl_json_plain_run(p, end);
      if (p >= end) return end;
      if (*p == '"') return p + 1;
      p += *p == '\\' ? 2 : 1;
      if (p > end) return end;
    }
  }
  if (ch != '{' && ch != '[') {
    const char *s = p;
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ':' &&
           !is_ws(*p))
      p++;
    return p == s ? p + 1 : p; /* always progress, even on invalid input */
  }
  int depth = 0;
  while (p < end) {
    ch = *p;
    if (ch == '"') {
      p = kl_json_skip_valid(p, end);
      continue;
    }
    p++;
    if (ch == '{' || ch == '[') {
      depth++;
    } else if (ch == '}' || ch == ']') {
      if (--depth == 0) return p;
    }
  }
  return end;
}

char kl_json_type(kl_span v) {
  if (!v.p || v.n == 0) return 0;
  switch (v.p[0]) {
  case '{': return 'o';
  case '[': return 'a';
  case '"': return 's';
  case 't': return 't';
  case 'f': return 'f';
  case 'n': return 'z';
  default: return 'n';
  }
}

void kl_json_iter_init(kl_json_iter *it, kl_span v) {
  it->kind = kl_json_type(v);
  it->end = v.p + v.n;
  it->p = (it->kind == 'o' || it->kind == 'a') ? v.p + 1 : it->end;
}

bool kl_json_next(kl_json_iter *it, kl_span *key, kl_span *val) {
  const char *p = ws(it->p, it->end), *end = it->end, *q;
  if (p < end && *p == ',') p = ws(p + 1, end);
  if (p >= end || *p == '}' || *p == ']') {
    it->p = end;
    return false;
  }
  if (it->kind == 'o') {
    q = scan_string(p, end);
    if (!q) goto bad;
    if (key) key->p = p, key->n = (size_t)(q - p);
    p = ws(q, end);
    if (p >= end || *p != ':') goto bad;
    p = ws(p + 1, end);
  } else if (key) {
    key->p = NULL, key->n = 0;
  }
  if (kl_json_skip(p, end, &q) != 0) goto bad;
  if (val) val->p = p, val->n = (size_t)(q - p);
  it->p = q;
  return true;
bad:
  it->p = end;
  return false;
}

bool kl_json_streq(kl_span str, const char *s) {
  if (kl_json_type(str) != 's') return false;
  size_t n = strlen(s);
  /* fast path: no escapes */
  if (str.n == n + 2 && memcmp(str.p + 1, s, n) == 0) return true;
  if (!memchr(str.p, '\\', str.n)) return false;
  kl_buf b = KL_BUF_INIT;
  bool eq = kl_json_unescape(str, &b) == 0 && b.len == n &&
            memcmp(b.data, s, n) == 0;
  kl_buf_free(&b);
  return eq;
}

bool kl_json_getv(kl_span obj, const char *const *keys, int nkeys,
                  kl_span *out) {
  kl_span cur = obj;
  for (int i = 0; i < nkeys; i++) {
    if (kl_json_type(cur) != 'o') return false;
    kl_json_iter it;
    kl_json_iter_init(&it, cur);
    kl_span k, v;
    bool found = false;
    while (kl_json_next(&it, &k, &v)) {
      if (kl_json_streq(k, keys[i])) {
        cur = v;
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  *out = cur;
  return true;
}

bool kl_json_get(kl_span obj, const char *path, kl_span *out) {
  char tmp[256];
  size_t n = strlen(path);
  if (n >= sizeof tmp) return false;
  memcpy(tmp, path, n + 1);
  const char *keys[32];
  int nk = 0;
  char *s = tmp;
  for (;;) {
    if (nk == 32) return false;
    keys[nk++] = s;
    char *dot = strchr(s, '.');
    if (!dot) break;
    *dot = '\0';
    s = dot + 1;
  }
  return kl_json_getv(obj, keys, nk, out);
}

static void put_utf8(kl_buf *out, unsigned cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (char)cp, n = 1;
  } else if (cp < 0x800) {
    b[0] = (char)(0xC0 | (cp >> 6)), b[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xE0 | (cp >> 12)), b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  } else {
    b[0] = (char)(0xF0 | (cp >> 18)), b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  kl_buf_add(out, b, n);
}

static unsigned hex4(const char *p) {
  return (unsigned)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 |
                    hexval(p[3]));
}

int kl_json_unescape(kl_span str, kl_buf *out) {
  if (kl_json_type(str) != 's' || str.n < 2) return KL_EJSON;
  const char *p = str.p + 1, *end = str.p + str.n - 1;
  kl_buf_reserve(out, str.n);
  while (p < end) {
    const char *q = p;
    while (q < end && *q != '\\') q++;
    kl_buf_add(out, p, (size_t)(q - p));
    if (q >= end) break;
    if (end - q < 2) return KL_EJSON;
    char e = q[1];
    p = q + 2;
    switch (e) {
    case '"': kl_buf_addc(out, '"'); break;
    case '\\': kl_buf_addc(out, '\\'); break;
    case '/': kl_buf_addc(out, '/'); break;
    case 'b': kl_buf_addc(out, '\b'); break;
    case 'f': kl_buf_addc(out, '\f'); break;
    case 'n': kl_buf_addc(out, '\n'); break;
    case 'r': kl_buf_addc(out, '\r'); break;
    case 't': kl_buf_addc(out, '\t'); break;
    case 'u': {
      if (end - p < 4) return KL_EJSON;
      unsigned cp = hex4(p);
      p += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' &&
          p[1] == 'u') {
        unsigned lo = hex4(p + 2);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
      }
      put_utf8(out, cp);
      break;
    }
    default: return KL_EJSON;
    }
  }
  return 0;
}

char *kl_json_strdup(kl_span str) {
  if (kl_json_type(str) != 's') return NULL;
  kl_buf b = KL_BUF_INIT;
  if (kl_json_unescape(str, &b) != 0) {
    kl_buf_free(&b);
    return NULL;
  }
  return kl_buf_detach(&b, NULL);
}

void kl_json_quote(kl_buf *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  kl_buf_reserve(out, n + 2);
  kl_buf_addc(out, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    kl_buf_add(out, s + run, i - run);
    run = i + 1;
    switch (ch) {
    case '"': kl_buf_add(out, "\\\"", 2); break;
    case '\\': kl_buf_add(out, "\\\\", 2); break;
    case '\n': kl_buf_add(out, "\\n", 2); break;
    case '\r': kl_buf_add(out, "\\r", 2); break;
    case '\t': kl_buf_add(out, "\\t", 2); break;
    default: {
      char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
      kl_buf_add(out, e, 6);
    }
    }
  }
  kl_buf_add(out, s + run, n - run);
  kl_buf_addc(out, '"');
}
