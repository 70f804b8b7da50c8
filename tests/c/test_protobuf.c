/* test_protobuf.c: decoding Kubernetes protobuf bodies. The fixtures are
 * the real bodies kubectl 1.32 sent to (and got from) kube-apiserver
 * v1.20, extracted from the -v=8 logs by tests/fixtures/protobuf/
 * extract.py; Secret and ServiceAccount bodies are built here with a tiny
 * encoder. Truncated and corrupted input must give errors, never crashes. */
#include "ctest.h"
#include "protobuf.h"
#include "testutil.h"

#define FIX "tests/fixtures/protobuf/"

static unsigned char *load(const char *path, size_t *n) {
  unsigned char *buf = (unsigned char *)tu_slurp(path, n);
  if (!buf) {
    printf("  cannot open %s (run from the repository root)\n", path);
    *n = 0;
  }
  return buf;
}

TEST(kubectl_create_namespace) {
  size_t n;
  unsigned char *b = load(FIX "create_namespace.request.bin", &n);
  cJSON *o = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_protobuf_decode(b, n, &o, &err), 0);
  CHECK(tu_json_same(o, "{\"kind\":\"Namespace\",\"apiVersion\":\"v1\",\"metadata\":{"
                "\"name\":\"wire-kc\",\"creationTimestamp\":null},\"spec\":{},"
                "\"status\":{}}"));
  cJSON_Delete(o);
  free(err);
  free(b);
}

TEST(kubectl_create_configmap) {
  size_t n;
  unsigned char *b = load(FIX "create_configmap.request.bin", &n);
  cJSON *o = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_protobuf_decode(b, n, &o, &err), 0);
  CHECK(tu_json_same(o, "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{"
                "\"name\":\"kc-cm\",\"namespace\":\"wire-kc\","
                "\"creationTimestamp\":null},\"data\":{\"a\":\"1\",\"b\":\"2\""
                "}}"));
  cJSON_Delete(o);
  free(err);
  free(b);
}

TEST(server_response_namespace) {
  size_t n;
  unsigned char *b = load(FIX "create_namespace.response.bin", &n);
  cJSON *o = NULL;
  char *err = NULL;
  /* klog cut the dump inside the envelope's last field: an error */
  CHECK_EQ_INT(kl_protobuf_decode(b, n, &o, &err), KL_EPROTO);
  CHECK(err && strstr(err, "protobuf: "));
  free(err);
  /* without the dangling byte the envelope is whole */
  CHECK_EQ_INT(kl_protobuf_decode(b, n - 1, &o, &err), 0);
  CHECK(tu_json_same(o,
             "{\"kind\":\"Namespace\",\"apiVersion\":\"v1\",\"metadata\":{"
             "\"name\":\"wire-kc\",\"uid\":\"7950d7c0-0dc8-4d51-a18f-"
             "ade86a1d0069\",\"resourceVersion\":\"311\",\"creationTimestamp\":"
             "\"2026-11-24T02:42:41Z\",\"managedFields\":[{\"manager\":"
             "\"kubectl-create\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
             "\"time\":\"2026-11-24T02:42:41Z\",\"fieldsType\":\"FieldsV1\","
             "\"fieldsV1\":{\"f:status\":{\"f:phase\":{}}}}]},\"spec\":{"
             "\"finalizers\":[\"kubernetes\"]},\"status\":{\"phase\":"
             "\"Active\"}}"));
  cJSON_Delete(o);
  free(err);
  free(b);
}

/* ---- a tiny encoder for hand-made bodies ---- */
typedef struct enc {
  unsigned char b[4096];
  size_t n;
} enc;
static void e_varint(enc *e, uint64_t v) {
  while (v >= 0x80) {
    e->b[e->n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  e->b[e->n++] = (unsigned char)v;
}
static void e_bytes(enc *e, int num, const void *p, size_t n) {
  e_varint(e, (uint64_t)num << 3 | 2);
  e_varint(e, n);
  memcpy(e->b + e->n, p, n);
  e->n += n;
}
static void e_str(enc *e, int num, const char *s) {
  e_bytes(e, num, s, strlen(s));
}
static void e_msg(enc *e, int num, const enc *m) { e_bytes(e, num, m->b, m->n); }
static void e_uint(enc *e, int num, uint64_t v) {
  e_varint(e, (uint64_t)num << 3);
  e_varint(e, v);
}
static void e_entry(enc *e, int num, const char *k, const void *v, size_t vn) {
  enc m = {{0}, 0};
  e_str(&m, 1, k);
  e_bytes(&m, 2, v, vn);
  e_msg(e, num, &m);
}
static void e_envelope(enc *out, const char *av, const char *kind,
                       const enc *raw) {
  enc tm = {{0}, 0};
  e_str(&tm, 1, av);
  e_str(&tm, 2, kind);
  memcpy(out->b, "k8s", 4);
  out->n = 4;
  e_msg(out, 1, &tm);
  e_msg(out, 2, raw);
  e_str(out, 3, "");
  e_str(out, 4, "");
}

TEST(secret_and_serviceaccount) {
  enc meta = {{0}, 0}, raw = {{0}, 0}, body;
  e_str(&meta, 1, "s1");
  e_str(&meta, 3, "ns");
  e_entry(&meta, 11, "app", "web", 3);
  e_str(&meta, 14, "example.com/f");
  e_uint(&meta, 10, 30);
  e_msg(&raw, 1, &meta);
  e_entry(&raw, 2, "bin", "\x00\xff\x10", 3);
  e_entry(&raw, 2, "pw", "hunter2", 7);
  e_str(&raw, 3, "Opaque");
  e_entry(&raw, 4, "plain", "text", 4);
  e_uint(&raw, 5, 1);
  e_uint(&raw, 99, 7); /* unknown fields are skipped */
  e_envelope(&body, "v1", "Secret", &raw);
  cJSON *o = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_protobuf_decode(body.b, body.n, &o, &err), 0);
  CHECK(tu_json_same(o, "{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":{"
                "\"name\":\"s1\",\"namespace\":\"ns\",\"creationTimestamp\":"
                "null,\"deletionGracePeriodSeconds\":30,\"labels\":{\"app\":"
                "\"web\"},\"finalizers\":[\"example.com/f\"]},\"immutable\":"
                "true,\"data\":{\"bin\":\"AP8Q\",\"pw\":\"aHVudGVyMg==\"},"
                "\"stringData\":{\"plain\":\"text\"},\"type\":\"Opaque\"}"));
  cJSON_Delete(o);
  free(err);

  enc sa = {{0}, 0}, ref = {{0}, 0}, lref = {{0}, 0};
  meta.n = 0;
  e_str(&meta, 1, "builder");
  e_msg(&sa, 1, &meta);
  e_str(&ref, 1, "Secret");
  e_str(&ref, 3, "tok");
  e_msg(&sa, 2, &ref);
  e_str(&lref, 1, "regcred");
  e_msg(&sa, 3, &lref);
  e_uint(&sa, 4, 0);
  e_envelope(&body, "v1", "ServiceAccount", &sa);
  CHECK_EQ_INT(kl_protobuf_decode(body.b, body.n, &o, &err), 0);
  CHECK(tu_json_same(o, "{\"kind\":\"ServiceAccount\",\"apiVersion\":\"v1\","
                "\"metadata\":{\"name\":\"builder\",\"creationTimestamp\":"
                "null},\"secrets\":[{\"kind\":\"Secret\",\"name\":\"tok\"}],"
                "\"imagePullSecrets\":[{\"name\":\"regcred\"}],"
                "\"automountServiceAccountToken\":false}"));
  cJSON_Delete(o);
  free(err);
  CHECK(kl_protobuf_supported("v1", "Secret"));
  CHECK(!kl_protobuf_supported("apps/v1", "Deployment"));
}

TEST(unsupported_and_malformed) {
  enc raw = {{0}, 0}, body;
  e_str(&raw, 1, "x");
  e_envelope(&body, "apps/v1", "Deployment", &raw);
  cJSON *o = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_protobuf_decode(body.b, body.n, &o, &err), KL_EINVAL);
  CHECK_EQ_STR(err, "protobuf: apps/v1 Deployment is not supported; send "
                    "JSON");
  free(err);
  CHECK(o == NULL);
  CHECK_EQ_INT(kl_protobuf_decode("{\"kind\":1}", 10, &o, &err), KL_EPROTO);
  CHECK(err && strstr(err, "magic"));
  free(err);
  CHECK_EQ_INT(kl_protobuf_decode("k8s", 3, &o, &err), KL_EPROTO);
  free(err);
  CHECK_EQ_INT(kl_protobuf_decode("k8s\0", 4, &o, &err), KL_EPROTO);
  CHECK(err && strstr(err, "no kind"));
  free(err);
  /* wrong wire type for metadata.name */
  enc meta = {{0}, 0};
  raw.n = 0;
  e_uint(&meta, 1, 5);
  e_msg(&raw, 1, &meta);
  e_envelope(&body, "v1", "ConfigMap", &raw);
  CHECK_EQ_INT(kl_protobuf_decode(body.b, body.n, &o, &err), KL_EPROTO);
  CHECK(err && strstr(err, "metadata: field 1"));
  free(err);
  /* a NUL byte inside a string */
  raw.n = meta.n = 0;
  e_bytes(&meta, 1, "a\0b", 3);
  e_msg(&raw, 1, &meta);
  e_envelope(&body, "v1", "ConfigMap", &raw);
  CHECK_EQ_INT(kl_protobuf_decode(body.b, body.n, &o, &err), KL_EPROTO);
  free(err);
  /* a contentEncoding we do not speak */
  raw.n = 0;
  enc tm = {{0}, 0};
  e_str(&tm, 1, "v1");
  e_str(&tm, 2, "ConfigMap");
  memcpy(body.b, "k8s", 4);
  body.n = 4;
  e_msg(&body, 1, &tm);
  e_msg(&body, 2, &raw);
  e_str(&body, 3, "gzip");
  CHECK_EQ_INT(kl_protobuf_decode(body.b, body.n, &o, &err), KL_EINVAL);
  free(err);
}

TEST(every_truncation_and_corruption_is_safe) {
  const char *files[] = {FIX "create_namespace.request.bin",
                         FIX "create_configmap.request.bin",
                         FIX "create_namespace.response.bin"};
  int ok = 0, bad = 0;
  for (int f = 0; f < 3; f++) {
    size_t n;
    unsigned char *b = load(files[f], &n);
    if (!b) {
      CHECK(b != NULL);
      continue;
    }
    for (size_t len = 0; len < n; len++) {
      cJSON *o = NULL;
      char *err = NULL;
      int rc = kl_protobuf_decode(b, len, &o, &err);
      if (rc) {
        bad++;
        CHECK(o == NULL && err != NULL);
      } else {
        ok++;
      }
      cJSON_Delete(o);
      free(err);
    }
    /* deterministic byte flips */
    unsigned seed = 12345;
    unsigned char *m = malloc(n);
    for (int round = 0; round < 2000; round++) {
      memcpy(m, b, n);
      for (int k = 0; k < 3; k++) {
        seed = seed * 1103515245u + 12345u;
        m[(seed >> 8) % n] ^= (unsigned char)(seed >> 20);
      }
      cJSON *o = NULL;
      char *err = NULL;
      int rc = kl_protobuf_decode(m, n, &o, &err);
      CHECK(rc == 0 ? o != NULL : o == NULL);
      cJSON_Delete(o);
      free(err);
    }
    free(m);
    free(b);
  }
  /* most prefixes cut a length-delimited field and must fail */
  CHECK(bad > ok);
}

int main(void) {
  RUN(kubectl_create_namespace);
  RUN(kubectl_create_configmap);
  RUN(server_response_namespace);
  RUN(secret_and_serviceaccount);
  RUN(unsupported_and_malformed);
  RUN(every_truncation_and_corruption_is_safe);
  return ctest_summary();
}
