/* test_watch_decode.c: the incremental watch decoder, fed the watch streams
 * captured from a real kube-apiserver (the .raw files of k8s-wire/watch, with their HTTP
 * chunked framing) in every split, plus malformed streams. The expected
 * events were read from the de-chunked .http captures and written below. */
#include <stdint.h>

#include "ctest.h"
#include "kl.h"
#include "watch_decode.h"
#include "testutil.h"

/* Test-only HTTP/1.1 de-chunker: splits the body of a raw response into its
 * chunks (offsets into raw). A response without Transfer-Encoding: chunked
 * (HTTP/2) is one chunk. Returns the chunk count or -1 on bad framing. */
typedef struct {
  const char *p;
  size_t n;
} chunk;

static int dechunk(const char *raw, size_t len, chunk *out, int max) {
  const char *end = raw + len;
  const char *hdr_end = strstr(raw, "\r\n\r\n");
  if (!hdr_end) return -1;
  const char *p = hdr_end + 4;
  if (!strcasestr(raw, "Transfer-Encoding: chunked") ||
      strcasestr(raw, "Transfer-Encoding: chunked") > hdr_end) {
    out[0].p = p, out[0].n = (size_t)(end - p);
    return 1;
  }
  int k = 0;
  for (;;) {
    char *e;
    unsigned long sz = strtoul(p, &e, 16);
    if (e == p || end - e < 2 || e[0] != '\r' || e[1] != '\n') return -1;
    p = e + 2;
    if (sz == 0) break;
    if ((size_t)(end - p) < sz + 2 || k == max) return -1;
    out[k].p = p, out[k].n = sz;
    k++;
    p += sz;
    if (p[0] != '\r' || p[1] != '\n') return -1;
    p += 2;
  }
  return k;
}

struct watch_case {
  const char *file;
  const char *types; /* first letters: Added Modified Deleted Bookmark Error */
  const char *rvs;   /* comma-separated resourceVersions */
  const char *names; /* comma-separated metadata.names ("" when none) */
};

static const struct watch_case cases[] = {
    {"bookmark_10s", "AB",
     "226,227",
     "bm-2,"},
    {"bookmark_75s", "ABB",
     "226,229,229",
     "bm-2,,"},
    {"cm_fieldselector_name", "M",
     "231",
     "cm-2"},
    {"cm_from_list_rv", "AMMDAMD",
     "232,233,234,235,236,237,238",
     "w1,w1,w1,w1,w2,w2,w2"},
    {"cm_http2", "AMMDAMD",
     "232,233,234,235,236,237,238",
     "w1,w1,w1,w1,w2,w2,w2"},
    {"cm_labelselector", "ADAD",
     "234,235,236,237",
     "w1,w1,w2,w2"},
    {"cm_metadata_only", "AMMDAMD",
     "232,233,234,235,236,237,238",
     "w1,w1,w1,w1,w2,w2,w2"},
    {"cm_no_rv", "AAAAAAA",
     "205,208,209,203,204,206,207",
     "cm-3,cm-6,cm-7,cm-1,cm-2,cm-4,cm-5"},
    {"cm_rv0", "AAAAAAA",
     "205,208,209,203,204,206,207",
     "cm-3,cm-6,cm-7,cm-1,cm-2,cm-4,cm-5"},
    {"cm_rv1_too_old", "E",
     "",
     ""},
    {"cm_rv1_too_old_reflector_style", "E",
     "",
     ""},
    {"cm_rv_compacted_old", "E",
     "",
     ""},
    {"cm_rv_future", "",
     "",
     ""},
    {"cm_table_watch", "AMD",
     "333,334,335",
     ",,"},
    {"cm_timeout2_empty", "",
     "",
     ""},
    {"finalizer_delete", "AMMD",
     "262,263,264,265",
     "fin-1,fin-1,fin-1,fin-1"},
    {"gc_background", "AAADDD",
     "285,286,287,288,289,290",
     "owner-background,dep-background-1,dep-background-2,owner-background,dep-background-1,dep-background-2"},
    {"gc_foreground", "AAAMDDD",
     "278,279,280,281,282,283,284",
     "owner-foreground,dep-foreground-1,dep-foreground-2,owner-foreground,dep-foreground-2,dep-foreground-1,owner-foreground"},
    {"gc_orphan", "AAAMMMD",
     "291,292,293,294,295,296,297",
     "owner-orphan,dep-orphan-1,dep-orphan-2,owner-orphan,dep-orphan-1,dep-orphan-2,owner-orphan"},
    {"namespace_delete", "AMMD",
     "300,302,304,305",
     "wire-nsdel,wire-nsdel,wire-nsdel,wire-nsdel"},
    {"no_bookmarks_10s", "A",
     "226",
     "bm-2"},
    {"widgets_from_list_rv", "AMMMDBB",
     "239,240,241,242,243,243,243",
     "wd-1,wd-1,wd-1,wd-1,wd-1,,"},
    {"widgets_rv1_too_old", "E",
     "",
     ""},
};

/* The expected signature "T name rv|..." of a case; ERROR events are
 * "E 410 Expired" (every captured ERROR is the too-old-RV Status). */
static void expected_sig(const struct watch_case *c, kl_buf *out) {
  const char *rv = c->rvs, *nm = c->names;
  for (const char *t = c->types; *t; t++) {
    size_t rl = strcspn(rv, ","), nl = strcspn(nm, ",");
    if (*t == 'E')
      kl_buf_adds(out, "E 410 Expired|");
    else
      kl_buf_addf(out, "%c %.*s %.*s|", *t, (int)nl, nm, (int)rl, rv);
    rv += rl + (rv[rl] == ',');
    nm += nl + (nm[nl] == ',');
  }
}

static void add_sig(kl_buf *sig, const kl_watch_event *ev) {
  if (ev->type == KL_WATCH_ERROR) {
    kl_buf_addf(sig, "E %d %s|", ev->status.code, ev->status.reason);
    return;
  }
  kl_buf_addf(sig, "%c %s %s|", kl_watch_type_name(ev->type)[0],
              kl_obj_name(ev->obj), kl_obj_resource_version(ev->obj));
}

/* Drains every available event into sig; returns the last next() result
 * (0 unless an error). */
static int drain(kl_watch_decoder *d, kl_buf *sig, int *count) {
  kl_watch_event ev;
  int rc;
  while ((rc = kl_watch_decoder_next(d, &ev)) == 1) {
    add_sig(sig, &ev);
    /* managedFields are dropped on ingest */
    if (ev.obj) {
      kl_span mf;
      if (kl_obj_get(ev.obj, "metadata.managedFields", &mf))
        kl_buf_adds(sig, "MF!");
    }
    kl_watch_event_clear(&ev);
    (*count)++;
  }
  return rc;
}

static kl_watch_decoder *new_dec(const char *file) {
  kl_obj_opts o = {.drop = kl_obj_default_drop};
  o.allow_unnamed = strcmp(file, "cm_table_watch") == 0;
  return kl_watch_decoder_new(&o, 0);
}

/* Feeds the pieces [cuts[i], cuts[i+1]) of body; returns the signature. */
static char *run_split(const char *file, const char *body, size_t n,
                       const size_t *cuts, int ncuts, int *rc_out) {
  kl_watch_decoder *d = new_dec(file);
  kl_buf sig = KL_BUF_INIT;
  kl_buf_adds(&sig, "");
  int count = 0, rc = 0;
  size_t prev = 0;
  for (int i = 0; i <= ncuts && rc == 0; i++) {
    size_t cut = i < ncuts ? cuts[i] : n;
    kl_watch_decoder_feed(d, body + prev, cut - prev);
    rc = drain(d, &sig, &count);
    prev = cut;
  }
  if (rc == 0) rc = kl_watch_decoder_finish(d);
  if (rc != 0) printf("  %s: %s\n", file, kl_watch_decoder_error(d));
  *rc_out = rc;
  kl_watch_decoder_free(d);
  return kl_buf_detach(&sig, NULL);
}

TEST(captured_streams_every_split) {
  size_t ncases = sizeof cases / sizeof cases[0];
  CHECK_EQ_INT(ncases, 23);
  for (size_t ci = 0; ci < ncases; ci++) {
    const struct watch_case *c = &cases[ci];
    char path[1024];
    snprintf(path, sizeof path, "%s/watch/%s.raw", tu_wire_dir(), c->file);
    size_t len;
    char *raw = tu_slurp(path, &len);
    CHECK(raw != NULL);
    if (!raw) continue;
    chunk ch[256];
    int nch = dechunk(raw, len, ch, 256);
    CHECK(nch >= 0);
    if (nch < 0) {
      free(raw);
      continue;
    }
    /* the de-chunked body, and the chunk boundaries inside it */
    kl_buf body = KL_BUF_INIT;
    size_t cuts[256];
    for (int i = 0; i < nch; i++) {
      kl_buf_add(&body, ch[i].p, ch[i].n);
      cuts[i] = body.len;
    }
    kl_buf_reserve(&body, 1);
    kl_buf want = KL_BUF_INIT;
    kl_buf_adds(&want, "");
    expected_sig(c, &want);

    /* the de-chunked bytes equal the .http capture's body */
    snprintf(path, sizeof path, "%s/watch/%s.http", tu_wire_dir(), c->file);
    size_t hlen;
    char *http = tu_slurp(path, &hlen);
    const char *hb = http ? tu_http_body_of(http) : NULL;
    CHECK(hb != NULL);
    if (hb) {
      CHECK_EQ_INT(hlen - (size_t)(hb - http), body.len);
      CHECK(memcmp(hb, body.data, body.len) == 0);
    }
    free(http);

    int rc;
    /* (a) as captured, chunk by chunk */
    char *got = run_split(c->file, body.data, body.len, cuts, nch, &rc);
    CHECK_EQ_INT(rc, 0);
    if (strcmp(got, want.data) != 0)
      printf("  %s chunked:\n    got  %s\n    want %s\n", c->file, got,
             want.data);
    CHECK_EQ_STR(got, want.data);
    free(got);
    /* (b) two feeds, split at every offset */
    int bad = 0;
    for (size_t cut = 0; cut <= body.len && !bad; cut++) {
      got = run_split(c->file, body.data, body.len, &cut, 1, &rc);
      if (rc != 0 || strcmp(got, want.data) != 0) {
        printf("  %s split at %zu: %s\n", c->file, cut, got);
        bad = 1;
      }
      free(got);
    }
    CHECK(!bad);
    /* (c) one byte at a time */
    size_t *ones = kl_malloc((body.len + 1) * sizeof *ones);
    for (size_t i = 0; i < body.len; i++) ones[i] = i + 1;
    got = run_split(c->file, body.data, body.len, ones, (int)body.len, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(got, want.data);
    free(got);
    free(ones);
    kl_buf_free(&want);
    kl_buf_free(&body);
    free(raw);
  }
}

static char *http_body(const char *file, size_t *n) {
  char rel[512];
  snprintf(rel, sizeof rel, "watch/%s.http", file);
  return tu_wire_body(rel, n);
}

TEST(error_event_is_410_expired) {
  size_t n;
  char *body = http_body("cm_rv1_too_old", &n);
  CHECK(body != NULL);
  if (!body) return;
  kl_watch_decoder *d = kl_watch_decoder_new(NULL, 0);
  kl_watch_decoder_feed(d, body, n);
  kl_watch_event ev;
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 1);
  CHECK_EQ_INT(ev.type, KL_WATCH_ERROR);
  CHECK(ev.obj == NULL);
  CHECK_EQ_INT(ev.status.code, 410);
  CHECK_EQ_STR(ev.status.reason, "Expired");
  CHECK_EQ_STR(ev.status.message, "too old resource version: 1 (308)");
  CHECK(kl_status_is_gone(&ev.status));
  kl_watch_event_clear(&ev);
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 0);
  CHECK_EQ_INT(kl_watch_decoder_finish(d), 0);
  kl_watch_decoder_free(d);
  free(body);
}

TEST(bookmarks_builtin_and_custom) {
  const char *files[] = {"bookmark_75s", "widgets_from_list_rv"};
  const char *kinds[] = {"ConfigMap", "Widget"};
  const char *rvs[] = {"229", "243"};
  for (int f = 0; f < 2; f++) {
    size_t n;
    char *body = http_body(files[f], &n);
    CHECK(body != NULL);
    if (!body) continue;
    /* the caller does not allow unnamed objects: BOOKMARKs still pass */
    kl_obj_opts o = {.drop = kl_obj_default_drop};
    kl_watch_decoder *d = kl_watch_decoder_new(&o, 0);
    kl_watch_decoder_feed(d, body, n);
    kl_watch_event ev;
    int bookmarks = 0;
    while (kl_watch_decoder_next(d, &ev) == 1) {
      if (ev.type == KL_WATCH_BOOKMARK) {
        bookmarks++;
        CHECK_EQ_STR(kl_obj_resource_version(ev.obj), rvs[f]);
        CHECK_EQ_STR(kl_obj_name(ev.obj), "");
        kl_span k;
        CHECK(kl_obj_get(ev.obj, "kind", &k) && kl_json_streq(k, kinds[f]));
      }
      kl_watch_event_clear(&ev);
    }
    CHECK_EQ_INT(bookmarks, 2);
    CHECK_EQ_STR(kl_watch_decoder_error(d), "");
    kl_watch_decoder_free(d);
    free(body);
  }
}

TEST(metadata_only_and_table_watches) {
  size_t n;
  char *body = http_body("cm_metadata_only", &n);
  CHECK(body != NULL);
  if (!body) return;
  kl_obj_opts o = {.drop = kl_obj_default_drop, .api_version = "v1",
                   .kind = "ConfigMap"};
  kl_watch_decoder *d = kl_watch_decoder_new(&o, 0);
  kl_watch_decoder_feed(d, body, n);
  kl_watch_event ev;
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 1);
  kl_span k;
  /* the object's own kind wins over the injected one */
  CHECK(kl_obj_get(ev.obj, "kind", &k) &&
        kl_json_streq(k, "PartialObjectMetadata"));
  CHECK(kl_obj_get(ev.obj, "apiVersion", &k) &&
        kl_json_streq(k, "meta.k8s.io/v1"));
  CHECK_EQ_STR(kl_obj_key(ev.obj), "wire-watch/w1");
  kl_watch_event_clear(&ev);
  kl_watch_decoder_free(d);
  free(body);

  /* a Table watch without allow_unnamed: a clear error */
  body = http_body("cm_table_watch", &n);
  CHECK(body != NULL);
  if (!body) return;
  d = kl_watch_decoder_new(&o, 0);
  kl_watch_decoder_feed(d, body, n);
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), KL_EINVAL);
  CHECK(ev.obj == NULL);
  const char *e = kl_watch_decoder_error(d);
  CHECK(strstr(e, "ADDED") && strstr(e, "metadata.name") &&
        strstr(e, "Table") && strstr(e, "allow_unnamed"));
  /* sticky until reset */
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), KL_EINVAL);
  kl_watch_decoder_reset(d);
  CHECK_EQ_STR(kl_watch_decoder_error(d), "");
  CHECK_EQ_INT(kl_watch_decoder_buffered(d), 0);
  kl_watch_decoder_free(d);
  free(body);
}

static const char *EV_A =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\","
    "\"namespace\":\"ns\",\"resourceVersion\":\"1\",\"managedFields\":[{}]}}}";
static const char *EV_B =
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\","
    "\"resourceVersion\":\"2\"},\"data\":{\"x\":\"}{\\\"\\n\"}}}";

/* Feeds s whole and returns the signature or the error. */
/* Decodes s fed in pieces of `step` bytes (0: all at once); the events'
 * signature, then "ERR message" on failure. */
static char *decode_fed(const char *s, size_t max, size_t step, int *rc) {
  kl_obj_opts o = {.drop = kl_obj_default_drop, .api_version = "v1",
                   .kind = "ConfigMap"};
  kl_watch_decoder *d = kl_watch_decoder_new(&o, max);
  kl_buf sig = KL_BUF_INIT;
  kl_buf_adds(&sig, "");
  int count = 0;
  size_t n = strlen(s);
  if (!step) step = n ? n : 1;
  *rc = 0;
  for (size_t at = 0; at < n && *rc == 0; at += step) {
    kl_watch_decoder_feed(d, s + at, n - at < step ? n - at : step);
    *rc = drain(d, &sig, &count);
  }
  if (*rc == 0) *rc = kl_watch_decoder_finish(d);
  if (*rc) kl_buf_addf(&sig, "ERR %s", kl_watch_decoder_error(d));
  kl_watch_decoder_free(d);
  return kl_buf_detach(&sig, NULL);
}

/* Decodes s fed at once, where most events take the decoder's fast path
 * (decode first, no framing scan), and checks that feeding it one byte at
 * a time (every event framed by the scan) gives the same events and the
 * same outcome: on a difference the result says so, failing the caller's
 * comparison. */
static char *decode_all(const char *s, size_t max, int *rc) {
  int rc1;
  char *whole = decode_fed(s, max, 0, rc);
  char *bytes = decode_fed(s, max, 1, &rc1);
  const char *e1 = strstr(whole, "ERR "), *e2 = strstr(bytes, "ERR ");
  size_t n1 = e1 ? (size_t)(e1 - whole) : strlen(whole);
  size_t n2 = e2 ? (size_t)(e2 - bytes) : strlen(bytes);
  if (*rc != rc1 || n1 != n2 || memcmp(whole, bytes, n1) != 0) {
    char *m = kl_sprintf("MISMATCH whole (%d) %s / bytewise (%d) %s", *rc,
                         whole, rc1, bytes);
    free(whole);
    whole = m;
  }
  free(bytes);
  return whole;
}

TEST(framing_variants) {
  char s[1024];
  int rc;
  /* concatenated without newline, CRLF, blank lines, pretty-printed */
  snprintf(s, sizeof s, "%s%s", EV_A, EV_B);
  char *g = decode_all(s, 0, &rc);
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_STR(g, "A a 1|M b 2|");
  free(g);
  snprintf(s, sizeof s, "\r\n\n%s\r\n  \n%s\n\n", EV_A, EV_B);
  g = decode_all(s, 0, &rc);
  CHECK_EQ_STR(g, "A a 1|M b 2|");
  free(g);
  g = decode_all("{\n  \"type\": \"DELETED\",\n  \"object\": {\n    "
                 "\"metadata\": {\"name\": \"p\", \"resourceVersion\": \"9\"}\n"
                 "  }\n}\n", 0, &rc);
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_STR(g, "D p 9|");
  free(g);
  /* kind/apiVersion injected when the object lacks them */
  kl_watch_decoder *d = kl_watch_decoder_new(
      &(kl_obj_opts){.api_version = "v1", .kind = "ConfigMap"}, 0);
  kl_watch_decoder_feed(d, EV_A, strlen(EV_A));
  kl_watch_event ev;
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 1);
  kl_span k;
  CHECK(kl_obj_get(ev.obj, "kind", &k) && kl_json_streq(k, "ConfigMap"));
  CHECK(kl_obj_get(ev.obj, "apiVersion", &k) && kl_json_streq(k, "v1"));
  CHECK(kl_obj_get(ev.obj, "metadata.managedFields", &k)); /* no drop set */
  kl_watch_event_clear(&ev);
  kl_watch_decoder_free(d);
}

TEST(malformed_streams) {
  char s[2048];
  int rc;
  /* truncated JSON, then more events: the cut is reported at the next line */
  snprintf(s, sizeof s, "%s\n{\"type\":\"ADDED\",\"object\":{\"metadata\":"
           "{\"name\":\"x\"\n%s\n", EV_A, EV_B);
  char *g = decode_all(s, 0, &rc);
  CHECK_EQ_INT(rc, KL_EJSON);
  CHECK(strstr(g, "A a 1|ERR truncated watch event") == g);
  free(g);
  /* a line starting with '{' inside an open event is a cut even when the
   * whole could parse (the fast path must not accept what framing
   * rejects) */
  g = decode_all("{\"type\":\"ADDED\",\"object\":\n{\"metadata\":{\"name\":"
                 "\"a\"}}}\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EJSON);
  CHECK(strstr(g, "ERR truncated watch event") == g);
  free(g);
  /* truncated inside a string */
  snprintf(s, sizeof s, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"na\n%s",
           EV_A);
  g = decode_all(s, 0, &rc);
  CHECK_EQ_INT(rc, KL_EJSON);
  CHECK(strstr(g, "inside a string") != NULL);
  free(g);
  /* the stream ends inside an event */
  g = decode_all("{\"type\":\"ADDED\",\"object\":{", 0, &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  CHECK(strstr(g, "ended inside an event (26 bytes") != NULL);
  free(g);
  /* a garbage line (an HTML error page, say) */
  snprintf(s, sizeof s, "%s\n<html>oops</html>\n%s\n", EV_A, EV_B);
  g = decode_all(s, 0, &rc);
  CHECK_EQ_INT(rc, KL_EJSON);
  CHECK_EQ_STR(g, "A a 1|ERR malformed watch stream: an event must be a JSON "
                  "object but starts with byte 0x3c (17 bytes up to the next "
                  "newline)");
  free(g);
  /* balanced but invalid JSON */
  g = decode_all("{\"type\":\"ADDED\",\"object\":{]}\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EJSON);
  CHECK(strstr(g, "malformed JSON in watch event") != NULL);
  free(g);
  /* valid JSON that is not an event */
  g = decode_all("{\"object\":{\"metadata\":{\"name\":\"a\"}}}\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  CHECK(strstr(g, "no \"type\"") != NULL);
  free(g);
  g = decode_all("{\"type\":\"ADDED\"}\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  CHECK(strstr(g, "ADDED event has no \"object\"") != NULL);
  free(g);
  g = decode_all("{\"type\":\"ADDED\",\"object\":[1]}\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  free(g);
  g = decode_all("{\"type\":\"RENAMED\",\"object\":{}}\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  CHECK(strstr(g, "unknown watch event type \"RENAMED\"") != NULL);
  free(g);
  g = decode_all("{\"type\":7,\"object\":{}}\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  free(g);
  /* an ERROR whose object is not a Status */
  g = decode_all("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Pod\"}}\n", 0,
                 &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  CHECK(strstr(g, "watch ERROR event") != NULL);
  free(g);
  /* an object without a name (not a BOOKMARK) */
  g = decode_all("{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}\n", 0,
                 &rc);
  CHECK_EQ_INT(rc, KL_EINVAL);
  CHECK(strstr(g, "no metadata.name") != NULL);
  free(g);
  /* a top-level array */
  g = decode_all("[{\"type\":\"ADDED\"}]\n", 0, &rc);
  CHECK_EQ_INT(rc, KL_EJSON);
  free(g);
}

TEST(event_size_limit) {
  int rc;
  /* a complete event over the limit */
  char *g = decode_all(EV_A, 64, &rc);
  CHECK_EQ_INT(rc, KL_EPROTO);
  CHECK(strstr(g, "exceeds the 64-byte limit") != NULL);
  CHECK(strstr(g, "\"name\"") == NULL); /* no content quoted */
  free(g);
  /* exactly at the limit passes */
  g = decode_all(EV_A, strlen(EV_A), &rc);
  CHECK_EQ_INT(rc, 0);
  free(g);
  /* an endless event is stopped as it grows, not when it completes */
  kl_watch_decoder *d = kl_watch_decoder_new(NULL, 1000);
  kl_watch_event ev;
  const char *open = "{\"type\":\"ADDED\",\"object\":{\"data\":\"";
  kl_watch_decoder_feed(d, open, strlen(open)); /* 34 bytes */
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 0);
  char pad[100];
  memset(pad, 'x', sizeof pad);
  int i, r = 0;
  for (i = 0; i < 100 && r == 0; i++) {
    kl_watch_decoder_feed(d, pad, sizeof pad);
    r = kl_watch_decoder_next(d, &ev);
  }
  CHECK_EQ_INT(r, KL_EPROTO);
  CHECK_EQ_INT(i, 10); /* 34 + 10*100 > 1000 */
  CHECK(strstr(kl_watch_decoder_error(d), "1000-byte limit") != NULL);
  /* later feeds are ignored; reset starts over */
  size_t before = kl_watch_decoder_buffered(d);
  kl_watch_decoder_feed(d, pad, sizeof pad);
  CHECK_EQ_INT(kl_watch_decoder_buffered(d), before);
  kl_watch_decoder_reset(d);
  kl_watch_decoder_feed(d, EV_A, strlen(EV_A) - 1);
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 0);
  kl_watch_decoder_feed(d, "}", 1);
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 1);
  CHECK_EQ_STR(kl_obj_key(ev.obj), "ns/a");
  kl_watch_event_clear(&ev);
  kl_watch_decoder_free(d);
}

int main(void) {
  RUN(captured_streams_every_split);
  RUN(error_event_is_410_expired);
  RUN(bookmarks_builtin_and_custom);
  RUN(metadata_only_and_table_watches);
  RUN(framing_variants);
  RUN(malformed_streams);
  RUN(event_size_limit);
  return ctest_summary();
}
