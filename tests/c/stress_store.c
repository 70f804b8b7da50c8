/* stress_store.c: writer threads apply random add/update/delete/replace
 * (and one add_indexer mid-run) while reader threads run get/list/by_index/
 * index. Readers check what must hold in any snapshot: each list is one
 * generation (replace is atomic), index results match the objects' fields,
 * keys are unique. At the end kl_store_check_indices must agree exactly with
 * a recomputation and the items must equal the writers' model.
 * Runs KLUA_STRESS_SECONDS seconds (default 10). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "ctest.h"
#include "kl.h"
#include "store.h"

#define NKEYS 240
#define NWRITERS 2
#define NREADERS 3
#define NNS 4

static kl_store *store;
static atomic_int stop, bad, reads, writes;
static double deadline_mid;
static atomic_int mid_indexer_added;

/* The model: what the store must hold, updated with the store under mu so
 * its order is the store's order. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static kl_obj *model[NKEYS];
static int gen; /* bumped by every replace; every object carries it */

/* The history of contents, as order-independent digests (a sum of a hash of
 * each held version's serial). A writer publishes the digest of the state
 * it is about to create (seq_pub) before the store write and marks it done
 * (seq_done) after, so a list taken between seq_done == b and seq_pub == a
 * must match one of hist[b..a]: a half-applied replace matches none. */
#define RING 4096
static _Atomic uint64_t hist[RING];
static _Atomic uint64_t seq_pub, seq_done;
static uint64_t cur_digest; /* under mu */

static uint64_t od(const kl_obj *o) {
  if (!o) return 0;
  uint64_t z = kl_obj_serial(o) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void publish(uint64_t digest) {
  uint64_t k = atomic_load(&seq_pub) + 1;
  atomic_store(&hist[k % RING], digest);
  atomic_store(&seq_pub, k);
  cur_digest = digest;
}

static void done(void) { atomic_store(&seq_done, atomic_load(&seq_pub)); }

static uint64_t rnd(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  return *s = x;
}

static void key_parts(int k, char *ns, size_t nsn, char *name, size_t nn) {
  if (k % 10 == 9) snprintf(ns, nsn, "%s", ""); /* cluster-scoped */
  else snprintf(ns, nsn, "ns%d", k % NNS);
  snprintf(name, nn, "obj-%03d", k);
}

static char *key_of(int k) {
  char ns[16], name[16];
  key_parts(k, ns, sizeof ns, name, sizeof name);
  return kl_meta_key(ns, name);
}

static kl_obj *make(int k, int g, uint64_t *r) {
  char ns[16], name[16];
  key_parts(k, ns, sizeof ns, name, sizeof name);
  kl_buf b = KL_BUF_INIT;
  kl_buf_addf(&b, "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\"", name);
  if (*ns) kl_buf_addf(&b, ",\"namespace\":\"%s\"", ns);
  kl_buf_addf(&b, ",\"resourceVersion\":\"%llu\",\"labels\":{\"gen\":\"%d\"",
              (unsigned long long)(rnd(r) % 100000), g);
  if (rnd(r) % 4) kl_buf_addf(&b, ",\"app\":\"a%d\"", (int)(rnd(r) % 5));
  kl_buf_adds(&b, "}");
  int nown = (int)(rnd(r) % 3);
  if (nown) {
    kl_buf_adds(&b, ",\"ownerReferences\":[");
    for (int i = 0; i < nown; i++)
      kl_buf_addf(&b, "%s{\"kind\":\"RS\",\"name\":\"rs%d\",\"uid\":\"u%d\"}",
                  i ? "," : "", (int)(rnd(r) % 6), (int)(rnd(r) % 6));
    kl_buf_adds(&b, "]");
  }
  kl_buf_adds(&b, "},\"spec\":{");
  if (rnd(r) % 3) kl_buf_addf(&b, "\"nodeName\":\"n%d\"", (int)(rnd(r) % 7));
  kl_buf_adds(&b, "}}");
  kl_obj *o = NULL;
  if (kl_obj_new(b.data, b.len, NULL, &o, NULL) != 0) atomic_fetch_add(&bad, 1);
  kl_buf_free(&b);
  return o;
}

/* Custom index: zero to three values derived from the name's digits. */
static int digits_fn(const kl_obj *obj, kl_strv *out, void *ud) {
  (void)ud;
  for (const char *p = kl_obj_name(obj); *p; p++)
    if (*p >= '1' && *p <= '3') kl_strv_pushn(out, p, 1);
  return 0;
}

static void fail(const char *what, const char *key) {
  if (atomic_fetch_add(&bad, 1) < 5) printf("  %s %s\n", what, key);
}

static void *writer(void *arg) {
  uint64_t r = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
  while (!atomic_load(&stop)) {
    if (kl_now() > deadline_mid && !atomic_exchange(&mid_indexer_added, 1)) {
      /* add_indexer on a filled store while readers run */
      pthread_mutex_lock(&mu);
      if (kl_store_add_indexer(store, "node", KL_INDEX_FIELD, "spec.nodeName") != 0)
        atomic_fetch_add(&bad, 1);
      if (kl_store_check_indices(store) != 0) fail("indices wrong after", "add_indexer");
      pthread_mutex_unlock(&mu);
    }
    int op = (int)(rnd(&r) % 100), k = (int)(rnd(&r) % NKEYS);
    pthread_mutex_lock(&mu);
    if (op < 55) { /* add / update */
      kl_obj *o = make(k, gen, &r);
      publish(cur_digest - od(model[k]) + od(o));
      if (o && kl_store_add(store, o) == 0) {
        kl_obj_unref(model[k]);
        model[k] = o;
      } else {
        atomic_fetch_add(&bad, 1);
        kl_obj_unref(o);
      }
    } else if (op < 97) { /* delete, by key or by object, known or not */
      int rc;
      publish(cur_digest - od(model[k]));
      if (op & 1 || !model[k]) {
        char *key = key_of(k);
        rc = kl_store_delete_key(store, key);
        free(key);
      } else {
        rc = kl_store_delete(store, model[k]);
      }
      if (rc != 0) atomic_fetch_add(&bad, 1);
      kl_obj_unref(model[k]);
      model[k] = NULL;
    } else { /* replace with a random set, duplicates included */
      int g = gen + 1, n = (int)(rnd(&r) % (NKEYS / 2));
      kl_obj **objs = kl_calloc((size_t)n + 1, sizeof *objs);
      kl_obj *next[NKEYS] = {0};
      for (int i = 0; i < n; i++) {
        int kk = (int)(rnd(&r) % NKEYS);
        objs[i] = make(kk, g, &r);
        kl_obj_unref(next[kk]);
        next[kk] = kl_obj_ref(objs[i]);
      }
      uint64_t d = 0;
      for (int i = 0; i < NKEYS; i++) d += od(next[i]);
      publish(d);
      char rv[16];
      snprintf(rv, sizeof rv, "%d", g);
      if (kl_store_replace(store, objs, (size_t)n, rv) != 0) atomic_fetch_add(&bad, 1);
      gen = g;
      for (int i = 0; i < NKEYS; i++) {
        kl_obj_unref(model[i]);
        model[i] = next[i];
      }
      for (int i = 0; i < n; i++) kl_obj_unref(objs[i]);
      free(objs);
    }
    done();
    /* a replace rebuilds every index: check between replaces too */
    if (op == 96 && kl_store_check_indices(store) != 0) fail("indices wrong", "");
    pthread_mutex_unlock(&mu);
    atomic_fetch_add(&writes, 1);
  }
  return NULL;
}

static int label_gen(const kl_obj *o) {
  const char *keys[] = {"metadata", "labels", "gen"};
  kl_span v;
  if (!kl_json_getv(kl_obj_span(o), keys, 3, &v)) return -1;
  char *s = kl_json_strdup(v);
  int g = s ? atoi(s) : -1;
  free(s);
  return g;
}

static void *reader(void *arg) {
  uint64_t r = 0xD1B54A32D192ED03ull * ((uintptr_t)arg + 1);
  kl_objv ov = {0};
  kl_strv sv = {0};
  char v[32];
  while (!atomic_load(&stop)) {
    int op = (int)(rnd(&r) % 7);
    switch (op) {
    case 0: { /* get: the key matches */
      char *key = key_of((int)(rnd(&r) % NKEYS));
      kl_obj *o = kl_store_get_by_key(store, key);
      if (o && strcmp(kl_obj_key(o), key) != 0) fail("get returned", kl_obj_key(o));
      kl_obj_unref(o);
      free(key);
      break;
    }
    case 1: { /* list: one of the states the writers made; one generation */
      uint64_t b = atomic_load(&seq_done);
      kl_store_list(store, &ov);
      uint64_t a = atomic_load(&seq_pub), d = 0;
      for (size_t i = 0; i < ov.n; i++) d += od(ov.v[i]);
      bool found = false;
      for (uint64_t k = b; a - b < RING / 2 && k <= a && !found; k++)
        found = atomic_load(&hist[k % RING]) == d;
      if (!found && atomic_load(&seq_pub) - b < RING / 2)
        fail("list matches no state the writers made", "");
      int g = -2;
      for (size_t i = 0; i < ov.n; i++) {
        int og = label_gen(ov.v[i]);
        if (g == -2) g = og;
        else if (og != g) fail("list mixes generations at", kl_obj_key(ov.v[i]));
      }
      if (ov.n > NKEYS) fail("list too long", "");
      kl_objv_free(&ov);
      break;
    }
    case 2: { /* by namespace: every object is in it */
      snprintf(v, sizeof v, "ns%d", (int)(rnd(&r) % (NNS + 1)));
      if (strcmp(v, "ns4") == 0) v[0] = '\0';
      if (kl_store_by_index(store, "namespace", v, &ov) != 0) fail("by_index", v);
      for (size_t i = 0; i < ov.n; i++)
        if (strcmp(kl_obj_namespace(ov.v[i]), v) != 0)
          fail("namespace index holds", kl_obj_key(ov.v[i]));
      kl_objv_free(&ov);
      break;
    }
    case 3: { /* by generation: the label matches */
      snprintf(v, sizeof v, "%d", (int)(rnd(&r) % 4));
      if (kl_store_by_index(store, "gen", v, &ov) != 0) fail("by_index", v);
      for (size_t i = 0; i < ov.n; i++)
        if (label_gen(ov.v[i]) != atoi(v)) fail("gen index holds", kl_obj_key(ov.v[i]));
      kl_objv_free(&ov);
      break;
    }
    case 4: { /* index(): objects sharing an owner uid with a probe */
      kl_obj *probe = make((int)(rnd(&r) % NKEYS), 0, &r);
      if (kl_store_index(store, "owner", probe, &ov) != 0) fail("index", "owner");
      kl_objv_free(&ov);
      if (kl_store_index(store, "digits", probe, &ov) != 0) fail("index", "digits");
      kl_objv_free(&ov);
      kl_obj_unref(probe);
      break;
    }
    case 5: { /* the index added mid-run: absent, then present */
      snprintf(v, sizeof v, "n%d", (int)(rnd(&r) % 7));
      int rc = kl_store_by_index(store, "node", v, &ov);
      if (rc != 0 && rc != KL_ENOENT) fail("by_index node", v);
      kl_objv_free(&ov);
      rc = kl_store_list_index_values(store, "app", &sv);
      if (rc != 0 || sv.n > 5) fail("list_index_values", "app");
      kl_strv_free(&sv);
      break;
    }
    default:
      kl_store_list_keys(store, &sv);
      kl_strv_free(&sv);
      if (rnd(&r) % 16 == 0) (void)kl_store_footprint(store);
      free(kl_store_last_replace_rv(store));
      break;
    }
    atomic_fetch_add(&reads, 1);
  }
  return NULL;
}

TEST(concurrent_writers_and_readers) {
  double secs = 10;
  const char *e = getenv("KLUA_STRESS_SECONDS");
  if (e && atof(e) > 0) secs = atof(e);
  store = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(store, "namespace", KL_INDEX_NAMESPACE, NULL), 0);
  CHECK_EQ_INT(kl_store_add_indexer(store, "gen", KL_INDEX_LABEL, "gen"), 0);
  CHECK_EQ_INT(kl_store_add_indexer(store, "app", KL_INDEX_LABEL, "app"), 0);
  CHECK_EQ_INT(kl_store_add_indexer(store, "owner", KL_INDEX_OWNER_UID, NULL), 0);
  CHECK_EQ_INT(kl_store_add_indexer(store, "rs", KL_INDEX_OWNER_KINDNAME, NULL), 0);
  CHECK_EQ_INT(kl_store_add_index_fn(store, "digits", digits_fn, NULL, NULL), 0);
  double t0 = kl_now();
  deadline_mid = t0 + secs / 2;
  pthread_t w[NWRITERS], rd[NREADERS];
  for (intptr_t i = 0; i < NWRITERS; i++)
    pthread_create(&w[i], NULL, writer, (void *)i);
  for (intptr_t i = 0; i < NREADERS; i++)
    pthread_create(&rd[i], NULL, reader, (void *)i);
  while (kl_now() - t0 < secs) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < NWRITERS; i++) pthread_join(w[i], NULL);
  for (int i = 0; i < NREADERS; i++) pthread_join(rd[i], NULL);
  printf("# %.1fs: %d writes, %d reads, %zu objects\n", secs,
         atomic_load(&writes), atomic_load(&reads), kl_store_len(store));

  CHECK_EQ_INT(atomic_load(&bad), 0);
  CHECK(atomic_load(&writes) > 0 && atomic_load(&reads) > 0);
  CHECK_EQ_INT(atomic_load(&mid_indexer_added), 1);
  CHECK_EQ_INT(kl_store_check_indices(store), 0);
  /* the items are exactly the model, version for version */
  size_t n = 0;
  for (int k = 0; k < NKEYS; k++) {
    char *key = key_of(k);
    kl_obj *o = kl_store_get_by_key(store, key);
    if (o != model[k]) printf("  %s: store and model differ\n", key);
    CHECK(o == model[k]);
    n += model[k] != NULL;
    kl_obj_unref(o);
    free(key);
  }
  CHECK_EQ_INT(kl_store_len(store), n);
  char *rv = kl_store_last_replace_rv(store);
  if (gen > 0) CHECK(rv && atoi(rv) == gen);
  free(rv);
  for (int k = 0; k < NKEYS; k++) kl_obj_unref(model[k]);
  kl_store_unref(store);
}

int main(void) {
  RUN(concurrent_writers_and_readers);
  return ctest_summary();
}
