/* fuzz_json_scanner.c: json.c's validating scanner. Checks, for any input:
 * kl_json_validate agrees with a strict RFC 8259 reference validator written
 * here (same depth rule: a value nested deeper than KL_JSON_MAX_DEPTH is
 * rejected; bytes >= 0x80 are not UTF-8-checked, as in json.c); what it
 * accepts cJSON accepts too (unless it holds \u escapes, since cJSON rejects
 * lone surrogates that Go's encoding/json accepts); kl_json_compact succeeds
 * exactly when validate does, its output is valid, free of whitespace,
 * idempotent and equal (cJSON_Compare) to the input; then path lookups,
 * iteration and unescaping run over the compact form. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "json.h"

/* ---- reference validator (RFC 8259, written for clarity) -------------- */

typedef struct {
  const unsigned char *p, *end;
} ref;

static void rws(ref *r) {
  while (r->p < r->end &&
         (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    r->p++;
}

static int risdigit(int c) { return c >= '0' && c <= '9'; }
static int rishex(int c) {
  return risdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int rvalue(ref *r, int depth);

static int rstring(ref *r) {
  r->p++; /* " */
  while (r->p < r->end) {
    unsigned char c = *r->p++;
    if (c == '"') return 1;
    if (c < 0x20) return 0;
    if (c == '\\') {
      if (r->p >= r->end) return 0;
      c = *r->p++;
      if (c == 'u') {
        for (int i = 0; i < 4; i++)
          if (r->p >= r->end || !rishex(*r->p++)) return 0;
      } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
        return 0;
      }
    }
  }
  return 0;
}

static int rnumber(ref *r) {
  if (r->p < r->end && *r->p == '-') r->p++;
  if (r->p >= r->end) return 0;
  if (*r->p == '0') r->p++;
  else if (*r->p >= '1' && *r->p <= '9')
    while (r->p < r->end && risdigit(*r->p)) r->p++;
  else return 0;
  if (r->p < r->end && *r->p == '.') {
    r->p++;
    if (r->p >= r->end || !risdigit(*r->p)) return 0;
    while (r->p < r->end && risdigit(*r->p)) r->p++;
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
    if (r->p >= r->end || !risdigit(*r->p)) return 0;
    while (r->p < r->end && risdigit(*r->p)) r->p++;
  }
  return 1;
}

static int rlit(ref *r, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n)) return 0;
  r->p += n;
  return 1;
}

static int rvalue(ref *r, int depth) {
  if (depth > KL_JSON_MAX_DEPTH) return 0;
  rws(r);
  if (r->p >= r->end) return 0;
  switch (*r->p) {
  case '{':
    r->p++;
    rws(r);
    if (r->p < r->end && *r->p == '}') return r->p++, 1;
    for (;;) {
      rws(r);
      if (r->p >= r->end || *r->p != '"' || !rstring(r)) return 0;
      rws(r);
      if (r->p >= r->end || *r->p++ != ':') return 0;
      if (!rvalue(r, depth + 1)) return 0;
      rws(r);
      if (r->p >= r->end) return 0;
      if (*r->p == ',') { r->p++; continue; }
      if (*r->p == '}') return r->p++, 1;
      return 0;
    }
  case '[':
    r->p++;
    rws(r);
    if (r->p < r->end && *r->p == ']') return r->p++, 1;
    for (;;) {
      if (!rvalue(r, depth + 1)) return 0;
      rws(r);
      if (r->p >= r->end) return 0;
      if (*r->p == ',') { r->p++; continue; }
      if (*r->p == ']') return r->p++, 1;
      return 0;
    }
  case '"': return rstring(r);
  case 't': return rlit(r, "true");
  case 'f': return rlit(r, "false");
  case 'n': return rlit(r, "null");
  default: return rnumber(r);
  }
}

static int ref_validate(const uint8_t *d, size_t n) {
  ref r = {d, d + n};
  if (!rvalue(&r, 0)) return 0;
  rws(&r);
  return r.p == r.end;
}

/* ---- walking the compact form ------------------------------------------ */

static void walk(kl_span v, int depth) {
  char t = kl_json_type(v);
  FZ_ASSERT(t != 0);
  if (t == 's') {
    kl_buf b = KL_BUF_INIT;
    FZ_ASSERT(kl_json_unescape(v, &b) == 0);
    char *s = kl_json_strdup(v);
    FZ_ASSERT(s != NULL);
    /* only strings without NUL compare equal to themselves as C strings */
    if (strlen(s) == b.len) FZ_ASSERT(kl_json_streq(v, s));
    free(s);
    kl_buf_free(&b);
    return;
  }
  if ((t != 'o' && t != 'a') || depth > 40) return;
  kl_json_iter it;
  kl_json_iter_init(&it, v);
  kl_span k, val;
  int n = 0;
  while (kl_json_next(&it, &k, &val)) {
    if (t == 'o') {
      FZ_ASSERT(kl_json_type(k) == 's');
      /* lookup by the (unescaped, NUL-free, dot-free) key finds a member */
      kl_buf kb = KL_BUF_INIT;
      FZ_ASSERT(kl_json_unescape(k, &kb) == 0);
      char *ks = kl_json_strdup(k);
      FZ_ASSERT(ks);
      kl_span got;
      /* keys holding NUL (\u0000) cannot be named by a C string */
      if (strlen(ks) == kb.len) {
        if (!strchr(ks, '.') && strlen(ks) < 200)
          FZ_ASSERT(kl_json_get(v, ks, &got));
        const char *keys[1] = {ks};
        FZ_ASSERT(kl_json_getv(v, keys, 1, &got));
      }
      kl_buf_free(&kb);
      free(ks);
    }
    if (++n < 64) walk(val, depth + 1);
  }
}

static const char *const drops[] = {"metadata.managedFields", "a", "b.c",
                                    "", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  const char *p = (const char *)data;
  int ok = kl_json_validate(p, size) == 0;
  FZ_ASSERT(ok == ref_validate(data, size));

  const char *after;
  if (kl_json_skip(p, p + size, &after) == 0)
    FZ_ASSERT(after > p && after <= p + size);

  kl_buf out = KL_BUF_INIT;
  int crc = kl_json_compact(p, size, NULL, &out);
  FZ_ASSERT((crc == 0) == ok);
  if (ok) {
    FZ_ASSERT(kl_json_validate(out.data, out.len) == 0);
    kl_buf again = KL_BUF_INIT;
    FZ_ASSERT(kl_json_compact(out.data, out.len, NULL, &again) == 0);
    FZ_ASSERT(again.len == out.len && !memcmp(again.data, out.data, out.len));
    kl_buf_free(&again);

    char *z = fz_cstr(data, size);
    cJSON *a = cJSON_ParseWithLength(z, size);
    cJSON *b = cJSON_ParseWithLength(out.data, out.len);
    if (!memchr(data, '\\', size) && !memchr(data, 0, size)) {
      /* cJSON rejects what Go also rejects only via \u (lone surrogates) */
      FZ_ASSERT(a != NULL);
      FZ_ASSERT(b != NULL);
      if (fz_comparable(a)) /* inf (1e400) never equals itself */
        FZ_ASSERT(cJSON_Compare(a, b, 1));
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(z);

    kl_span v = {out.data, out.len};
    walk(v, 0);
    kl_span got;
    (void)kl_json_get(v, "metadata.name", &got);
    (void)kl_json_get(v, "a.b.c.d.e.f", &got);

    kl_buf dropped = KL_BUF_INIT;
    FZ_ASSERT(kl_json_compact(p, size, drops, &dropped) == 0);
    FZ_ASSERT(kl_json_validate(dropped.data, dropped.len) == 0);
    FZ_ASSERT(dropped.len <= out.len);
    kl_buf_free(&dropped);
  }
  kl_buf_free(&out);
  return 0;
}
