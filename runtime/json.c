/* json.c: validating JSON scanner; see json.h. Recursion is bounded by
 * KL_JSON_MAX_DEPTH so hostile input cannot exhaust the stack. */
#include "json.h"

#include <string.h>

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

/* Scans a string starting at the opening quote; returns the byte after the
 * closing quote, or NULL. */
static const char *scan_string(const char *p, const char *end) {
  p++;
  for (;;) {
    /* fast path: plain bytes */
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
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

/* Compacting scanner. When out is NULL it only validates. drop paths are
 * matched per level: drops[i] points at the remaining path of candidate i
 * (NULL when that candidate no longer matches at this depth). */
typedef struct {
  kl_buf *out;
  const char *end;
} cctx;

#define EMIT(c, s, n)                                                          \
  do {                                                                         \
    if ((c)->out) kl_buf_add((c)->out, (s), (n));                              \
  } while (0)

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
  EMIT(c, "{", 1);
  p = ws(p + 1, end);
  if (p < end && *p == '}') {
    EMIT(c, "}", 1);
    return p + 1;
  }
  bool first = true;
  for (;;) {
    p = ws(p, end);
    if (p >= end || *p != '"') return NULL;
    const char *ks = p;
    const char *ke = scan_string(p, end);
    if (!ke) return NULL;
    p = ws(ke, end);
    if (p >= end || *p != ':') return NULL;
    p = ws(p + 1, end);
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
    if (dropped) {
      cctx skip = {NULL, end};
      p = value(&skip, p, depth + 1, NULL, 0);
      if (!p) return NULL;
    } else {
      if (!first) EMIT(c, ",", 1);
      first = false;
      EMIT(c, ks, (size_t)(ke - ks));
      EMIT(c, ":", 1);
      p = value(c, p, depth + 1, sub, nsub);
      if (!p) return NULL;
    }
    p = ws(p, end);
    if (p >= end) return NULL;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == '}') {
      EMIT(c, "}", 1);
      return p + 1;
    }
    return NULL;
  }
}

static const char *array(cctx *c, const char *p, int depth) {
  const char *end = c->end;
  EMIT(c, "[", 1);
  p = ws(p + 1, end);
  if (p < end && *p == ']') {
    EMIT(c, "]", 1);
    return p + 1;
  }
  for (bool first = true;; first = false) {
    if (!first) EMIT(c, ",", 1);
    p = value(c, p, depth + 1, NULL, 0);
    if (!p) return NULL;
    p = ws(p, end);
    if (p >= end) return NULL;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == ']') {
      EMIT(c, "]", 1);
      return p + 1;
    }
    return NULL;
  }
}

static const char *value(cctx *c, const char *p, int depth,
                         const char *const *drops, int ndrops) {
  const char *end = c->end;
  if (depth > KL_JSON_MAX_DEPTH) return NULL;
  p = ws(p, end);
  if (p >= end) return NULL;
  const char *q;
  switch (*p) {
  case '{': return object(c, p, depth, drops, ndrops);
  case '[': return array(c, p, depth);
  case '"': q = scan_string(p, end); break;
  case 't': q = scan_lit(p, end, "true", 4); break;
  case 'f': q = scan_lit(p, end, "false", 5); break;
  case 'n': q = scan_lit(p, end, "null", 4); break;
  default: q = scan_number(p, end); break;
  }
  if (q) EMIT(c, p, (size_t)(q - p));
  return q;
}

int kl_json_skip(const char *p, const char *end, const char **after) {
  cctx c = {NULL, end};
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

int kl_json_compact(const char *p, size_t n, const char *const *drop,
                    kl_buf *out) {
  const char *end = p + n;
  int nd = 0;
  while (drop && drop[nd] && nd < 8) nd++;
  cctx c = {out, end};
  kl_buf_reserve(out, n);
  const char *q = value(&c, p, 0, drop, nd);
  if (!q || ws(q, end) != end) return KL_EJSON;
  return 0;
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
