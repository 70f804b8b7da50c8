/* lua_json.c: JSON text and kl_obj <-> Lua values; see lua_json.h.
 *
 * Per lua_State it keeps one context table in the registry (the metatables,
 * the kl_obj cache and a small C state with a scratch buffer). The decoder is
 * a single-pass recursive descent parser that builds tables directly; the
 * encoder walks tables with lua_next and writes compact JSON. */
#include "lua_json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-state context ------------------------------------------------ */

/* registry[&ctx_key] = ctx table with these array slots */
static char ctx_key;
enum {
  CTX_OMT = 1, /* object metatable */
  CTX_AMT,     /* array metatable */
  CTX_CACHE,   /* serial -> table, weak values */
  CTX_RING,    /* slot -> table: the strong recently-used set */
  CTX_STATE,   /* ljstate userdata */
  CTX_RO,      /* table -> "kind ns/name", weak keys (read-only debug) */
  CTX_RONEW,   /* the __newindex function used in read-only debug mode */
};

#define RING_N 64

typedef struct ljstate {
  kl_buf scratch; /* unescaped strings, long numbers */
  int readonly;
  unsigned hand;
  uint64_t serial[RING_N]; /* 0 = empty slot */
  unsigned char bit[RING_N];
  uint64_t hits, misses;
} ljstate;

static int state_gc(lua_State *L) {
  ljstate *st = lua_touserdata(L, 1);
  kl_buf_free(&st->scratch);
  return 0;
}

/* __newindex of object_mt/array_mt while read-only debug mode is on:
 * raises for tables that belong to a pushed kl_obj, rawsets otherwise. */
static int ro_newindex(lua_State *L) {
  lua_pushvalue(L, 1);
  lua_rawget(L, lua_upvalueindex(1)); /* t k v name|nil */
  if (!lua_isnil(L, -1)) {
    const char *name = lua_tostring(L, -1);
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (k)
      return luaL_error(L,
                        "attempt to set field '%s' of read-only object %s "
                        "(copy it first: require('klua.json').copy(obj))",
                        k, name);
    return luaL_error(L,
                      "attempt to set a %s key of read-only object %s "
                      "(copy it first: require('klua.json').copy(obj))",
                      luaL_typename(L, 2), name);
  }
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 0;
}

static void new_weak(lua_State *L, const char *mode) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

/* Pushes the context table (creating it on first use); returns its index. */
static int push_ctx(lua_State *L) {
  lua_pushlightuserdata(L, &ctx_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1)) return lua_gettop(L);
  lua_pop(L, 1);
  lua_createtable(L, 8, 0); /* ctx */
  int ctx = lua_gettop(L);
  lua_newtable(L);
  lua_pushliteral(L, "object");
  lua_setfield(L, -2, "__jsontype");
  lua_rawseti(L, ctx, CTX_OMT);
  lua_newtable(L);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__jsontype");
  lua_rawseti(L, ctx, CTX_AMT);
  new_weak(L, "v");
  lua_rawseti(L, ctx, CTX_CACHE);
  lua_createtable(L, RING_N, 0);
  lua_rawseti(L, ctx, CTX_RING);
  ljstate *st = lua_newuserdata(L, sizeof *st);
  memset(st, 0, sizeof *st);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawseti(L, ctx, CTX_STATE);
  new_weak(L, "k");
  lua_pushvalue(L, -1);
  lua_rawseti(L, ctx, CTX_RO);
  lua_pushcclosure(L, ro_newindex, 1);
  lua_rawseti(L, ctx, CTX_RONEW);
  lua_pushlightuserdata(L, &ctx_key);
  lua_pushvalue(L, ctx);
  lua_rawset(L, LUA_REGISTRYINDEX); /* ctx */
  return ctx;
}

static ljstate *ctx_state(lua_State *L, int ctx) {
  lua_rawgeti(L, ctx, CTX_STATE);
  ljstate *st = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return st;
}

void kl_lua_push_null(lua_State *L) { lua_pushlightuserdata(L, NULL); }

bool kl_lua_isnull(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, idx);
}

void kl_lua_push_object_mt(lua_State *L) {
  int ctx = push_ctx(L);
  lua_rawgeti(L, ctx, CTX_OMT);
  lua_remove(L, ctx);
}

void kl_lua_push_array_mt(lua_State *L) {
  int ctx = push_ctx(L);
  lua_rawgeti(L, ctx, CTX_AMT);
  lua_remove(L, ctx);
}

/* ---- decoder ----------------------------------------------------------- */

typedef struct dec {
  lua_State *L;
  const char *start, *p, *end;
  int omt, amt; /* stack indices of the metatables */
  kl_buf *scratch;
  const char *err; /* static message */
  const char *errp;
} dec;

static int dfail(dec *d, const char *at, const char *msg) {
  d->err = msg;
  d->errp = at;
  return -1;
}

static inline const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  return p;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Reads 4 hex digits at p (p+4 <= end checked by caller); -1 if bad. */
static long hex4(const char *p) {
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval((unsigned char)p[i]);
    if (h < 0) return -1;
    v = v << 4 | h;
  }
  return v;
}

static void put_utf8(kl_buf *b, unsigned long cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | cp >> 6);
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | cp >> 12);
    u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | cp >> 18);
    u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  kl_buf_add(b, u, n);
}

/* Slow path of dec_string: the string has escapes. q is at the first
 * backslash, s at the first content byte. */
static int dec_string_esc(dec *d, const char *s, const char *q) {
  kl_buf *b = d->scratch;
  const char *end = d->end;
  b->len = 0;
  kl_buf_add(b, s, (size_t)(q - s));
  for (;;) {
    const char *r = q;
    while (r < end) {
      unsigned char c = (unsigned char)*r;
      if (c == '"' || c == '\\' || c < 0x20) break;
      r++;
    }
    if (r > q) kl_buf_add(b, q, (size_t)(r - q));
    q = r;
    if (q >= end) return dfail(d, q, "unterminated string");
    unsigned char c = (unsigned char)*q;
    if (c == '"') break;
    if (c < 0x20) return dfail(d, q, "control character in string");
    /* backslash */
    if (q + 1 >= end) return dfail(d, q, "unterminated string");
    switch (q[1]) {
    case '"': kl_buf_addc(b, '"'); break;
    case '\\': kl_buf_addc(b, '\\'); break;
    case '/': kl_buf_addc(b, '/'); break;
    case 'b': kl_buf_addc(b, '\b'); break;
    case 'f': kl_buf_addc(b, '\f'); break;
    case 'n': kl_buf_addc(b, '\n'); break;
    case 'r': kl_buf_addc(b, '\r'); break;
    case 't': kl_buf_addc(b, '\t'); break;
    case 'u': {
      if (end - q < 6) return dfail(d, q, "bad \\u escape");
      long cp = hex4(q + 2);
      if (cp < 0) return dfail(d, q, "bad \\u escape");
      q += 6;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* a high surrogate: combine with a following low one */
        long lo = -1;
        if (end - q >= 6 && q[0] == '\\' && q[1] == 'u') {
          lo = hex4(q + 2);
          if (lo < 0) return dfail(d, q, "bad \\u escape");
        }
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          q += 6;
        } else {
          cp = 0xFFFD; /* lone high surrogate, as Go's decoder does */
        }
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD; /* lone low surrogate */
      }
      put_utf8(b, (unsigned long)cp);
      continue;
    }
    default: return dfail(d, q, "bad escape in string");
    }
    q += 2;
  }
  lua_pushlstring(d->L, b->data ? b->data : "", b->len);
  d->p = q + 1;
  return 0;
}

/* d->p is at the opening quote; pushes the string. */
static inline int dec_string(dec *d) {
  const char *s = d->p + 1, *q = s, *end = d->end;
  while (q < end) {
    unsigned char c = (unsigned char)*q;
    if (c == '"') {
      lua_pushlstring(d->L, s, (size_t)(q - s));
      d->p = q + 1;
      return 0;
    }
    if (c == '\\') return dec_string_esc(d, s, q);
    if (c < 0x20) return dfail(d, q, "control character in string");
    q++;
  }
  return dfail(d, q, "unterminated string");
}

#define ISDIGIT(c) ((unsigned)((c) - '0') < 10u)

static int dec_number(dec *d) {
  const char *s = d->p, *q = s, *end = d->end;
  int neg = 0, is_int = 1, nd = 0;
  uint64_t v = 0;
  if (*q == '-') {
    neg = 1;
    q++;
  }
  if (q >= end || !ISDIGIT(*q)) return dfail(d, s, "bad number");
  if (*q == '0') {
    q++;
    nd = 1;
    if (q < end && ISDIGIT(*q)) return dfail(d, s, "bad number (leading zero)");
  } else {
    while (q < end && ISDIGIT(*q)) {
      if (nd < 19) v = v * 10 + (uint64_t)(*q - '0');
      nd++;
      q++;
    }
  }
  if (q < end && *q == '.') {
    is_int = 0;
    q++;
    if (q >= end || !ISDIGIT(*q)) return dfail(d, s, "bad number");
    while (q < end && ISDIGIT(*q)) q++;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    is_int = 0;
    q++;
    if (q < end && (*q == '+' || *q == '-')) q++;
    if (q >= end || !ISDIGIT(*q)) return dfail(d, s, "bad number");
    while (q < end && ISDIGIT(*q)) q++;
  }
  double x;
  if (is_int && nd <= 19) {
    x = (double)v; /* correctly rounded */
    if (neg) x = -x;
  } else {
    size_t n = (size_t)(q - s);
    char local[64];
    char *buf = local;
    if (n >= sizeof local) {
      d->scratch->len = 0;
      kl_buf_add(d->scratch, s, n);
      buf = d->scratch->data;
    } else {
      memcpy(local, s, n);
      local[n] = '\0';
    }
    x = strtod(buf, NULL);
  }
  lua_pushnumber(d->L, x);
  d->p = q;
  return 0;
}

static int dec_value(dec *d, int depth);

static int dec_object(dec *d, int depth) {
  lua_State *L = d->L;
  if (!lua_checkstack(L, 4)) return dfail(d, d->p, "Lua stack exhausted");
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, d->omt);
  lua_setmetatable(L, -2); /* t */
  const char *p = skip_ws(d->p + 1, d->end);
  if (p < d->end && *p == '}') {
    d->p = p + 1;
    return 0;
  }
  for (;;) {
    if (p >= d->end || *p != '"') return dfail(d, p, "expected a string key");
    d->p = p;
    if (dec_string(d)) return -1; /* t k */
    p = skip_ws(d->p, d->end);
    if (p >= d->end || *p != ':') return dfail(d, p, "expected ':'");
    d->p = skip_ws(p + 1, d->end);
    if (dec_value(d, depth + 1)) return -1; /* t k v */
    lua_rawset(L, -3);                       /* t */
    p = skip_ws(d->p, d->end);
    if (p < d->end && *p == ',') {
      p = skip_ws(p + 1, d->end);
      continue;
    }
    if (p < d->end && *p == '}') {
      d->p = p + 1;
      return 0;
    }
    return dfail(d, p, "expected ',' or '}'");
  }
}

static int dec_array(dec *d, int depth) {
  lua_State *L = d->L;
  if (!lua_checkstack(L, 4)) return dfail(d, d->p, "Lua stack exhausted");
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, d->amt);
  lua_setmetatable(L, -2); /* t */
  const char *p = skip_ws(d->p + 1, d->end);
  if (p < d->end && *p == ']') {
    d->p = p + 1;
    return 0;
  }
  for (int i = 1;; i++) {
    d->p = p;
    if (dec_value(d, depth + 1)) return -1; /* t v */
    lua_rawseti(L, -2, i);                   /* t */
    p = skip_ws(d->p, d->end);
    if (p < d->end && *p == ',') {
      p = skip_ws(p + 1, d->end);
      continue;
    }
    if (p < d->end && *p == ']') {
      d->p = p + 1;
      return 0;
    }
    return dfail(d, p, "expected ',' or ']'");
  }
}

static int lit(dec *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
    return dfail(d, d->p, "unexpected character");
  d->p += n;
  return 0;
}

/* d->p is at the value (whitespace skipped); pushes it. */
static int dec_value(dec *d, int depth) {
  if (d->p >= d->end) return dfail(d, d->p, "unexpected end of input");
  switch (*d->p) {
  case '{':
    if (depth > KL_JSON_MAX_DEPTH) return dfail(d, d->p, "nesting too deep");
    return dec_object(d, depth);
  case '[':
    if (depth > KL_JSON_MAX_DEPTH) return dfail(d, d->p, "nesting too deep");
    return dec_array(d, depth);
  case '"': return dec_string(d);
  case 't':
    if (lit(d, "true", 4)) return -1;
    lua_pushboolean(d->L, 1);
    return 0;
  case 'f':
    if (lit(d, "false", 5)) return -1;
    lua_pushboolean(d->L, 0);
    return 0;
  case 'n':
    if (lit(d, "null", 4)) return -1;
    lua_pushlightuserdata(d->L, NULL);
    return 0;
  default:
    if (*d->p == '-' || ISDIGIT(*d->p)) return dec_number(d);
    return dfail(d, d->p, "unexpected character");
  }
}

/* Decodes with the metatables at omt/amt; on failure restores the stack and
 * writes a message to errbuf. */
static int decode(lua_State *L, kl_span json, int omt, int amt, kl_buf *scr,
                  char *errbuf, size_t errlen) {
  int top = lua_gettop(L);
  dec d = {L, json.p, json.p, json.p + json.n, omt, amt, scr, NULL, NULL};
  if (!json.p) d.start = d.p = d.end = "";
  d.p = skip_ws(d.p, d.end);
  int rc = dec_value(&d, 0);
  if (rc == 0) {
    d.p = skip_ws(d.p, d.end);
    if (d.p != d.end) rc = dfail(&d, d.p, "trailing garbage after JSON value");
  }
  if (scr->cap > 65536) kl_buf_free(scr); /* don't pin huge scratch space */
  if (rc == 0) return 0;
  lua_settop(L, top);
  if (errbuf && errlen) {
    size_t off = (size_t)(d.errp - d.start);
    if (d.errp < d.end)
      snprintf(errbuf, errlen, "malformed JSON: %s at offset %zu near '%c'",
               d.err, off,
               (unsigned char)*d.errp >= 0x20 && (unsigned char)*d.errp < 0x7f
                   ? *d.errp
                   : '?');
    else
      snprintf(errbuf, errlen, "malformed JSON: %s at offset %zu (end)", d.err,
               off);
  }
  return KL_EJSON;
}

int kl_lua_push_json_err(lua_State *L, kl_span json, char *errbuf,
                         size_t errlen) {
  lua_checkstack(L, 8);
  int ctx = push_ctx(L);
  lua_rawgeti(L, ctx, CTX_OMT);
  lua_rawgeti(L, ctx, CTX_AMT); /* ctx omt amt */
  ljstate *st = ctx_state(L, ctx);
  int rc = decode(L, json, ctx + 1, ctx + 2, &st->scratch, errbuf, errlen);
  if (rc == 0) {
    lua_replace(L, ctx); /* v omt amt */
    lua_settop(L, ctx);  /* v */
  } else {
    lua_settop(L, ctx - 1);
  }
  return rc;
}

int kl_lua_push_json(lua_State *L, kl_span json) {
  return kl_lua_push_json_err(L, json, NULL, 0);
}

/* ---- encoder ----------------------------------------------------------- */

typedef struct enc {
  lua_State *L;
  kl_buf *out;
  int omt, amt;
  int depth;
  const void *path[KL_JSON_MAX_DEPTH + 1];
  char *err;   /* NEW message of the innermost failure */
  char *where; /* NEW path built while unwinding */
  int cut;     /* where lacks its outer part */
} enc;

static int efail(enc *e, char *msg) {
  e->err = msg;
  return -1;
}

/* Prepends a path segment for the key at stack index kidx (string) or the
 * array index i. */
static void prepend_path(enc *e, int kidx, long i) {
  char *seg;
  if (e->where && strlen(e->where) > 200) { /* long enough */
    e->cut = 1;
    return;
  }
  if (kidx) {
    size_t n;
    const char *k = lua_tolstring(e->L, kidx, &n);
    int ident = n > 0 && !ISDIGIT(k[0]);
    for (size_t j = 0; ident && j < n; j++) {
      char c = k[j];
      ident = (c == '_' || ISDIGIT(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'));
    }
    if (ident)
      seg = kl_sprintf(".%.*s", (int)(n > 200 ? 200 : n), k);
    else
      seg = kl_sprintf("[\"%.*s\"]", (int)(n > 200 ? 200 : n), k);
  } else {
    seg = kl_sprintf("[%ld]", i);
  }
  char *w = kl_sprintf("%s%s", seg, e->where ? e->where : "");
  free(seg);
  free(e->where);
  e->where = w;
}

/* Output helpers: kl_buf without per-byte calls. The buffer is
 * NUL-terminated once, at the end of kl_lua_to_json. */
static inline char *ob_room(kl_buf *b, size_t n) {
  if (b->len + n + 1 > b->cap) kl_buf_reserve(b, n);
  return b->data + b->len;
}

static inline void ob_addc(kl_buf *b, char c) {
  ob_room(b, 1);
  b->data[b->len++] = c;
}

static inline void ob_add(kl_buf *b, const char *p, size_t n) {
  memcpy(ob_room(b, n), p, n);
  b->len += n;
}

/* escape[c]: 0 copy as is, 'u' as \u00XX, else the letter after '\'. */
static const unsigned char escape[256] = {
    ['\0'] = 'u', [1] = 'u', [2] = 'u', [3] = 'u', [4] = 'u', [5] = 'u',
    [6] = 'u', [7] = 'u', ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n',
    [11] = 'u', ['\f'] = 'f', ['\r'] = 'r', [14] = 'u', [15] = 'u',
    [16] = 'u', [17] = 'u', [18] = 'u', [19] = 'u', [20] = 'u', [21] = 'u',
    [22] = 'u', [23] = 'u', [24] = 'u', [25] = 'u', [26] = 'u', [27] = 'u',
    [28] = 'u', [29] = 'u', [30] = 'u', [31] = 'u', ['"'] = '"',
    ['\\'] = '\\',
};

static void enc_string(kl_buf *b, const char *s, size_t n) {
  size_t i = 0;
  while (i < n && !escape[(unsigned char)s[i]]) i++;
  if (i == n) { /* the usual case: nothing to escape */
    char *o = ob_room(b, n + 2);
    o[0] = '"';
    memcpy(o + 1, s, n);
    o[n + 1] = '"';
    b->len += n + 2;
    return;
  }
  static const char hex[] = "0123456789abcdef";
  char *o = ob_room(b, 6 * n + 2); /* worst case: all \u00XX */
  char *o0 = o;
  *o++ = '"';
  memcpy(o, s, i);
  o += i;
  for (; i < n; i++) {
    unsigned char c = (unsigned char)s[i], x = escape[c];
    if (!x) {
      *o++ = (char)c;
    } else if (x != 'u') {
      *o++ = '\\';
      *o++ = (char)x;
    } else {
      memcpy(o, "\\u00", 4);
      o[4] = hex[c >> 4];
      o[5] = hex[c & 15];
      o += 6;
    }
  }
  *o++ = '"';
  b->len += (size_t)(o - o0);
}

static void enc_number(enc *e, double x) {
  char buf[40];
  if (x == floor(x) && fabs(x) < 9007199254740992.0) { /* 2^53 */
    char *p = buf + sizeof buf;
    uint64_t v = (uint64_t)fabs(x);
    do {
      *--p = (char)('0' + v % 10);
      v /= 10;
    } while (v);
    if (x < 0) *--p = '-';
    ob_add(e->out, p, (size_t)(buf + sizeof buf - p));
    return;
  }
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, sizeof buf, "%.*g", prec, x);
    if (strtod(buf, NULL) == x) break;
  }
  ob_add(e->out, buf, (size_t)n);
}

static int enc_value(enc *e, int idx);

/* Is the number at idx an integer >= 1? Sets *out. */
static int index_key(lua_State *L, int idx, double *out) {
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  double k = lua_tonumber(L, idx);
  *out = k;
  return k >= 1 && k == floor(k) && k < 9007199254740992.0;
}

static int enc_array_items(enc *e, int idx, long n) {
  lua_State *L = e->L;
  ob_addc(e->out, '[');
  for (long i = 1; i <= n; i++) {
    if (i > 1) ob_addc(e->out, ',');
    lua_rawgeti(L, idx, (int)i);
    if (enc_value(e, lua_gettop(L))) {
      lua_pop(L, 1);
      prepend_path(e, 0, i);
      return -1;
    }
    lua_pop(L, 1);
  }
  ob_addc(e->out, ']');
  return 0;
}

static int enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  const void *self = lua_topointer(L, idx);
  for (int i = 0; i < e->depth; i++)
    if (e->path[i] == self) return efail(e, kl_strdup("cycle in table"));
  if (e->depth > KL_JSON_MAX_DEPTH) /* the decoder's limit */
    return efail(e, kl_strdup("tables nested too deep"));
  if (!lua_checkstack(L, 6)) return efail(e, kl_strdup("Lua stack exhausted"));
  e->path[e->depth++] = self;

  int kind = 0; /* 'o', 'a', or 0: decide from the keys */
  if (lua_getmetatable(L, idx)) {
    if (lua_rawequal(L, -1, e->omt)) kind = 'o';
    else if (lua_rawequal(L, -1, e->amt)) kind = 'a';
    lua_pop(L, 1);
  }
  int rc = 0;
  if (kind != 'o') {
    /* classify the keys: count, max index, non-index keys */
    long count = 0, nstr = 0, nother = 0;
    double max = 0, k;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      if (index_key(L, -1, &k)) {
        count++;
        if (k > max) max = k;
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        nstr++;
      } else {
        nother++;
      }
    }
    if (kind == 'a') {
      if (nstr || nother) {
        rc = efail(e, kl_strdup("array table has a non-index key"));
      } else if (max > 2.0 * (double)count + 16) {
        rc = efail(e, kl_sprintf("array table is too sparse (%ld items, "
                                 "largest index %.0f)", count, max));
      } else {
        rc = enc_array_items(e, idx, (long)max);
      }
      goto done;
    }
    if (nother) {
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING && !index_key(L, -1, &k)) break;
      }
      rc = efail(e, kl_sprintf("table has a %s key; object keys must be "
                               "strings", luaL_typename(L, -1)));
      lua_pop(L, 1);
      goto done;
    }
    if (count && nstr) {
      rc = efail(e, kl_strdup("table mixes index keys and string keys"));
      goto done;
    }
    if (count) {
      if (max != (double)count) {
        rc = efail(e, kl_sprintf("table has integer keys that are not a "
                                 "sequence 1..n (%ld keys, largest %.0f)",
                                 count, max));
        goto done;
      }
      rc = enc_array_items(e, idx, count);
      goto done;
    }
  }
  /* object */
  ob_addc(e->out, '{');
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* k v */
    if (lua_type(L, -2) != LUA_TSTRING) {
      rc = efail(e, kl_sprintf("object table has a %s key; object keys "
                               "must be strings", luaL_typename(L, -2)));
      lua_pop(L, 2);
      goto done;
    }
    if (!first) ob_addc(e->out, ',');
    first = 0;
    size_t kn;
    const char *ks = lua_tolstring(L, -2, &kn);
    enc_string(e->out, ks, kn);
    ob_addc(e->out, ':');
    if (enc_value(e, lua_gettop(L))) {
      prepend_path(e, lua_gettop(L) - 1, 0);
      lua_pop(L, 2);
      rc = -1;
      goto done;
    }
    lua_pop(L, 1); /* k */
  }
  ob_addc(e->out, '}');
done:
  e->depth--;
  return rc;
}

static int enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: ob_add(e->out, "null", 4); return 0;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) ob_add(e->out, "true", 4);
    else ob_add(e->out, "false", 5);
    return 0;
  case LUA_TNUMBER: {
    double x = lua_tonumber(L, idx);
    if (isnan(x)) return efail(e, kl_strdup("cannot encode NaN"));
    if (isinf(x)) return efail(e, kl_strdup("cannot encode an infinite number"));
    enc_number(e, x);
    return 0;
  }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    enc_string(e->out, s, n);
    return 0;
  }
  case LUA_TLIGHTUSERDATA:
    if (!lua_touserdata(L, idx)) {
      ob_add(e->out, "null", 4);
      return 0;
    }
    return efail(e, kl_strdup("cannot encode a lightuserdata"));
  case LUA_TTABLE: return enc_table(e, idx);
  default:
    return efail(e, kl_sprintf("cannot encode a %s", luaL_typename(L, idx)));
  }
}

int kl_lua_to_json(lua_State *L, int idx, kl_buf *out, char **err) {
  if (err) *err = NULL;
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  lua_checkstack(L, 8);
  int top = lua_gettop(L);
  int ctx = push_ctx(L);
  lua_rawgeti(L, ctx, CTX_OMT);
  lua_rawgeti(L, ctx, CTX_AMT);
  enc *e = kl_calloc(1, sizeof *e);
  e->L = L;
  e->out = out;
  e->omt = ctx + 1;
  e->amt = ctx + 2;
  size_t len0 = out->len;
  int rc = enc_value(e, idx);
  lua_settop(L, top);
  if (rc == 0) {
    out->data[out->len] = '\0';
    free(e);
    return 0;
  }
  out->len = len0;
  if (out->data) out->data[len0] = '\0';
  if (err)
    *err = kl_sprintf("cannot encode as JSON: %s at %s%s", e->err,
                      e->cut ? "(...)" : e->where ? "value" : "top level",
                      e->where ? e->where : "");
  free(e->err);
  free(e->where);
  free(e);
  return KL_EINVAL;
}

int kl_lua_to_obj(lua_State *L, int idx, const kl_obj_opts *opts,
                  kl_obj **out, char **err) {
  *out = NULL;
  kl_buf b = KL_BUF_INIT;
  int rc = kl_lua_to_json(L, idx, &b, err);
  if (rc == 0) rc = kl_obj_new(b.data, b.len, opts, out, err);
  kl_buf_free(&b);
  return rc;
}

/* ---- kl_obj cache ------------------------------------------------------ */

/* Pushes "kind ns/name" for messages. */
static void push_obj_name(lua_State *L, const kl_obj *obj) {
  kl_span kind;
  char *k = NULL;
  if (kl_obj_get(obj, "kind", &kind)) k = kl_json_strdup(kind);
  lua_pushfstring(L, "%s %s", k && *k ? k : "object", kl_obj_key(obj));
  free(k);
}

/* Marks every table reachable from the table at idx as read-only. */
static void mark_ro(lua_State *L, int idx, int ro, int name) {
  lua_checkstack(L, 4);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, name);
  lua_rawset(L, ro);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_istable(L, -1)) mark_ro(L, lua_gettop(L), ro, name);
    lua_pop(L, 1);
  }
}

/* Deep equality of two decoded values (debug mode verification). */
static int deep_equal(lua_State *L, int a, int b) {
  if (lua_rawequal(L, a, b)) return 1;
  if (!lua_istable(L, a) || !lua_istable(L, b)) return 0;
  lua_checkstack(L, 6);
  if (!lua_getmetatable(L, a)) lua_pushnil(L);
  if (!lua_getmetatable(L, b)) lua_pushnil(L);
  int same_mt = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same_mt) return 0;
  long na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, a)) { /* k va */
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b); /* k va vb */
    int eq = deep_equal(L, lua_gettop(L) - 1, lua_gettop(L));
    lua_pop(L, 2);
    if (!eq) {
      lua_pop(L, 1);
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

static void ring_touch(lua_State *L, int ctx, ljstate *st, uint64_t serial,
                       int tidx) {
  for (int i = 0; i < RING_N; i++) {
    if (st->serial[i] == serial) {
      st->bit[i] = 1;
      return;
    }
  }
  /* CLOCK: evict the first slot whose reference bit is clear */
  while (st->bit[st->hand]) {
    st->bit[st->hand] = 0;
    st->hand = (st->hand + 1) % RING_N;
  }
  unsigned slot = st->hand;
  st->hand = (st->hand + 1) % RING_N;
  st->serial[slot] = serial;
  st->bit[slot] = 1;
  lua_rawgeti(L, ctx, CTX_RING);
  lua_pushvalue(L, tidx);
  lua_rawseti(L, -2, (int)slot + 1);
  lua_pop(L, 1);
}

static void ring_forget(lua_State *L, int ctx, ljstate *st, uint64_t serial) {
  for (int i = 0; i < RING_N; i++) {
    if (st->serial[i] != serial) continue;
    st->serial[i] = 0;
    st->bit[i] = 0;
    lua_rawgeti(L, ctx, CTX_RING);
    lua_pushnil(L);
    lua_rawseti(L, -2, i + 1);
    lua_pop(L, 1);
  }
}

void kl_lua_push_obj(lua_State *L, const kl_obj *obj) {
  lua_checkstack(L, 12);
  int ctx = push_ctx(L);
  ljstate *st = ctx_state(L, ctx);
  uint64_t serial = kl_obj_serial(obj);
  lua_rawgeti(L, ctx, CTX_CACHE);
  int cache = lua_gettop(L);
  lua_pushnumber(L, (lua_Number)serial);
  lua_rawget(L, cache); /* ctx cache t|nil */
  if (!lua_isnil(L, -1)) {
    st->hits++;
    int t = lua_gettop(L);
    if (st->readonly) {
      lua_rawgeti(L, ctx, CTX_OMT);
      lua_rawgeti(L, ctx, CTX_AMT);
      char msg[160];
      if (decode(L, kl_obj_span(obj), t + 1, t + 2, &st->scratch, msg,
                 sizeof msg) == 0) {
        int same = deep_equal(L, t, lua_gettop(L));
        if (!same) {
          /* forget the damaged table so the next push converts afresh */
          lua_pushnumber(L, (lua_Number)serial);
          lua_pushnil(L);
          lua_rawset(L, cache);
          ring_forget(L, ctx, st, serial);
          push_obj_name(L, obj);
          luaL_error(L,
                     "object %s was modified in Lua (pushed objects are "
                     "read-only; copy before changing)",
                     lua_tostring(L, -1));
        }
      }
      lua_settop(L, t);
    }
    ring_touch(L, ctx, st, serial, t);
    lua_replace(L, ctx);
    lua_settop(L, ctx); /* t */
    return;
  }
  st->misses++;
  lua_pop(L, 1);
  lua_rawgeti(L, ctx, CTX_OMT);
  lua_rawgeti(L, ctx, CTX_AMT); /* ctx cache omt amt */
  char msg[160];
  if (decode(L, kl_obj_span(obj), cache + 1, cache + 2, &st->scratch, msg,
             sizeof msg) != 0) {
    /* cannot happen for objects made by kl_obj_new (validated, same depth
     * limit); push nil rather than a half-built table */
    kl_log(KL_LOG_ERROR, "lua_json", "cannot convert %s: %s", kl_obj_key(obj),
           msg);
    lua_settop(L, ctx - 1);
    lua_pushnil(L);
    return;
  }
  int t = lua_gettop(L); /* ctx cache omt amt t */
  if (st->readonly) {
    lua_rawgeti(L, ctx, CTX_RO);
    push_obj_name(L, obj);
    mark_ro(L, t, t + 1, t + 2);
    lua_settop(L, t);
  }
  lua_pushnumber(L, (lua_Number)serial);
  lua_pushvalue(L, t);
  lua_rawset(L, cache);
  ring_touch(L, ctx, st, serial, t);
  lua_replace(L, ctx);
  lua_settop(L, ctx); /* t */
}

void kl_lua_push_objs(lua_State *L, kl_obj *const *objs, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    kl_lua_push_obj(L, objs[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

void kl_lua_push_strs(lua_State *L, char *const *strs, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, strs[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

int kl_lua_push_found(lua_State *L, kl_obj *obj) {
  if (!obj) {
    lua_pushnil(L);
    return 1;
  }
  kl_lua_push_obj(L, obj);
  kl_obj_unref(obj);
  return 1;
}

void kl_lua_json_set_readonly(lua_State *L, bool on) {
  lua_checkstack(L, 6);
  int ctx = push_ctx(L);
  ljstate *st = ctx_state(L, ctx);
  st->readonly = on;
  for (int slot = CTX_OMT; slot <= CTX_AMT; slot++) {
    lua_rawgeti(L, ctx, slot);
    lua_pushliteral(L, "__newindex");
    if (on) lua_rawgeti(L, ctx, CTX_RONEW);
    else lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  /* forget converted objects so that later pushes are built (and marked)
   * in the new mode */
  new_weak(L, "v");
  lua_rawseti(L, ctx, CTX_CACHE);
  lua_createtable(L, RING_N, 0);
  lua_rawseti(L, ctx, CTX_RING);
  memset(st->serial, 0, sizeof st->serial);
  memset(st->bit, 0, sizeof st->bit);
  st->hand = 0;
  if (!on) {
    new_weak(L, "k");
    lua_pushvalue(L, -1);
    lua_rawseti(L, ctx, CTX_RO);
    lua_pushcclosure(L, ro_newindex, 1);
    lua_rawseti(L, ctx, CTX_RONEW);
  }
  lua_pop(L, 1);
}

bool kl_lua_json_readonly(lua_State *L) {
  int ctx = push_ctx(L);
  bool on = ctx_state(L, ctx)->readonly;
  lua_pop(L, 1);
  return on;
}

void kl_lua_json_cache_stats(lua_State *L, uint64_t *hits, uint64_t *misses) {
  int ctx = push_ctx(L);
  ljstate *st = ctx_state(L, ctx);
  if (hits) *hits = st->hits;
  if (misses) *misses = st->misses;
  lua_pop(L, 1);
}
