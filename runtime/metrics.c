/* metrics.c: the Prometheus registry and text exposition (see metrics.h). */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "informer.h"
#include "workqueue.h"

struct kl_metric_series {
  kl_metric *fam;
  char **values;
  _Atomic uint64_t bits; /* counter/gauge value as double bits */
  /* histograms: per-bucket (non-cumulative) counts, the last one +Inf */
  pthread_mutex_t hmu;
  uint64_t *counts;
  uint64_t count;
  double sum;
};

struct kl_metric {
  kl_metrics *reg;
  char *name, *help;
  int type;
  size_t nlabels;
  char **labels;
  double *buckets;
  size_t nbuckets;
  pthread_mutex_t mu; /* guards series */
  kl_hmap series;     /* encoded label values -> kl_metric_series* */
};

typedef struct collector {
  int id;
  kl_metrics_collect_fn fn;
  void *ud;
  bool owned_ud; /* free(ud) on removal */
} collector;

struct kl_metrics {
  pthread_mutex_t mu; /* guards fams */
  kl_hmap fams;
  pthread_mutex_t cmu; /* guards collectors; held while they run */
  collector *cols;
  size_t ncols, capcols;
  int next_id;
};

static const double default_buckets[] = {.005, .01, .025, .05, .1, .25,
                                         .5,   1,   2.5,  5,   10};

/* ---- doubles in atomics --------------------------------------------- */

static uint64_t d2b(double d) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
}
static double b2d(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double n) {
  uint64_t old = atomic_load(p);
  while (!atomic_compare_exchange_weak(p, &old, d2b(b2d(old) + n))) {
  }
}

/* ---- registry ------------------------------------------------------- */

kl_metrics *kl_metrics_new(void) {
  kl_metrics *r = kl_calloc(1, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_mutex_init(&r->cmu, NULL);
  kl_hmap_init(&r->fams, KL_HMAP_OWN_KEYS);
  r->next_id = 1;
  return r;
}

static void series_free(kl_metric_series *s, size_t nlabels) {
  for (size_t i = 0; i < nlabels; i++) free(s->values[i]);
  free(s->values);
  free(s->counts);
  pthread_mutex_destroy(&s->hmu);
  free(s);
}

static void family_free(kl_metric *m) {
  size_t i = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(&m->series, &i, &k, &v)) series_free(v, m->nlabels);
  kl_hmap_free(&m->series);
  for (size_t j = 0; j < m->nlabels; j++) free(m->labels[j]);
  free(m->labels);
  free(m->buckets);
  free(m->name);
  free(m->help);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void kl_metrics_free(kl_metrics *r) {
  if (!r) return;
  size_t i = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(&r->fams, &i, &k, &v)) family_free(v);
  kl_hmap_free(&r->fams);
  for (size_t j = 0; j < r->ncols; j++)
    if (r->cols[j].owned_ud) free(r->cols[j].ud);
  free(r->cols);
  pthread_mutex_destroy(&r->mu);
  pthread_mutex_destroy(&r->cmu);
  free(r);
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static kl_metrics *default_reg;
static void default_init(void) { default_reg = kl_metrics_new(); }

kl_metrics *kl_metrics_default(void) {
  pthread_once(&default_once, default_init);
  return default_reg;
}

static bool valid_name(const char *s, bool metric) {
  if (!s || !*s) return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 c == '_' || (metric && c == ':');
    if (!alpha && !(p > s && c >= '0' && c <= '9')) return false;
  }
  return metric || strncmp(s, "__", 2) != 0;
}

static void set_err(char **err, char *msg) {
  if (err)
    *err = msg;
  else
    free(msg);
}

static const char *type_name(int t) {
  return t == KL_METRIC_COUNTER ? "counter"
         : t == KL_METRIC_GAUGE ? "gauge"
                                : "histogram";
}

static int reg(kl_metrics *r, int type, const char *name, const char *help,
               const char *const *labels, const double *buckets,
               size_t nbuckets, kl_metric **out, char **err) {
  *out = NULL;
  if (err) *err = NULL;
  if (!valid_name(name, true)) {
    set_err(err, kl_sprintf("metric name \"%s\" is not valid "
                            "([a-zA-Z_:][a-zA-Z0-9_:]*)", name ? name : ""));
    return KL_EINVAL;
  }
  size_t nl = 0;
  while (labels && labels[nl]) {
    if (!valid_name(labels[nl], false) ||
        (type == KL_METRIC_HISTOGRAM && strcmp(labels[nl], "le") == 0)) {
      set_err(err, kl_sprintf("metric %s: label name \"%s\" is not valid",
                              name, labels[nl]));
      return KL_EINVAL;
    }
    for (size_t j = 0; j < nl; j++)
      if (strcmp(labels[j], labels[nl]) == 0) {
        set_err(err, kl_sprintf("metric %s: label \"%s\" given twice", name,
                                labels[nl]));
        return KL_EINVAL;
      }
    if (++nl > KL_METRICS_MAX_LABELS) {
      set_err(err, kl_sprintf("metric %s: more than %d labels", name,
                              KL_METRICS_MAX_LABELS));
      return KL_EINVAL;
    }
  }
  if (type == KL_METRIC_HISTOGRAM) {
    if (!buckets || nbuckets == 0) {
      buckets = default_buckets;
      nbuckets = sizeof default_buckets / sizeof default_buckets[0];
    }
    for (size_t i = 0; i < nbuckets; i++)
      if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
        set_err(err, kl_sprintf("metric %s: buckets must be finite and "
                                "strictly increasing", name));
        return KL_EINVAL;
      }
  } else {
    nbuckets = 0;
  }

  pthread_mutex_lock(&r->mu);
  kl_metric *m = kl_hmap_get(&r->fams, name);
  if (m) {
    bool same = m->type == type && m->nlabels == nl &&
                m->nbuckets == nbuckets;
    for (size_t i = 0; same && i < nl; i++)
      same = strcmp(m->labels[i], labels[i]) == 0;
    for (size_t i = 0; same && i < nbuckets; i++)
      same = m->buckets[i] == buckets[i];
    pthread_mutex_unlock(&r->mu);
    if (!same) {
      set_err(err, kl_sprintf("metric %s is already registered as a %s with "
                              "other labels or buckets",
                              name, type_name(m->type)));
      return KL_EEXIST;
    }
    *out = m;
    return 0;
  }
  m = kl_calloc(1, sizeof *m);
  m->reg = r;
  m->name = kl_strdup(name);
  m->help = kl_strdup(help ? help : "");
  m->type = type;
  m->nlabels = nl;
  m->labels = kl_calloc(nl ? nl : 1, sizeof *m->labels);
  for (size_t i = 0; i < nl; i++) m->labels[i] = kl_strdup(labels[i]);
  if (nbuckets) {
    m->buckets = kl_malloc(nbuckets * sizeof *m->buckets);
    memcpy(m->buckets, buckets, nbuckets * sizeof *m->buckets);
    m->nbuckets = nbuckets;
  }
  pthread_mutex_init(&m->mu, NULL);
  kl_hmap_init(&m->series, KL_HMAP_OWN_KEYS);
  kl_hmap_put(&r->fams, name, m);
  pthread_mutex_unlock(&r->mu);
  *out = m;
  return 0;
}

int kl_metrics_counter(kl_metrics *r, const char *name, const char *help,
                       const char *const *labels, kl_metric **out,
                       char **err) {
  return reg(r, KL_METRIC_COUNTER, name, help, labels, NULL, 0, out, err);
}

int kl_metrics_gauge(kl_metrics *r, const char *name, const char *help,
                     const char *const *labels, kl_metric **out, char **err) {
  return reg(r, KL_METRIC_GAUGE, name, help, labels, NULL, 0, out, err);
}

int kl_metrics_histogram(kl_metrics *r, const char *name, const char *help,
                         const char *const *labels, const double *buckets,
                         size_t nbuckets, kl_metric **out, char **err) {
  return reg(r, KL_METRIC_HISTOGRAM, name, help, labels, buckets, nbuckets,
             out, err);
}

int kl_metric_type(const kl_metric *m) { return m->type; }
const char *kl_metric_name(const kl_metric *m) { return m->name; }
size_t kl_metric_nlabels(const kl_metric *m) { return m->nlabels; }
const char *kl_metric_label(const kl_metric *m, size_t i) {
  return i < m->nlabels ? m->labels[i] : NULL;
}

/* ---- series --------------------------------------------------------- */

kl_metric_series *kl_metric_with(kl_metric *m, const char *const *values,
                                 size_t n) {
  if (!m || n != m->nlabels) return NULL;
  /* key: "<len>:<value>" per label, so any byte may appear in values */
  char stack[256];
  kl_buf key = KL_BUF_INIT;
  size_t need = 1;
  for (size_t i = 0; i < n; i++)
    need += 21 + (values[i] ? strlen(values[i]) : 0);
  char *k = stack;
  if (need > sizeof stack) {
    kl_buf_reserve(&key, need);
    k = key.data;
  }
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const char *v = values[i] ? values[i] : "";
    size_t len = strlen(v);
    off += (size_t)sprintf(k + off, "%zu:", len);
    memcpy(k + off, v, len);
    off += len;
  }
  k[off] = 0;
  pthread_mutex_lock(&m->mu);
  kl_metric_series *s = kl_hmap_get(&m->series, k);
  if (!s) {
    s = kl_calloc(1, sizeof *s);
    s->fam = m;
    s->values = kl_calloc(n ? n : 1, sizeof *s->values);
    for (size_t i = 0; i < n; i++)
      s->values[i] = kl_strdup(values[i] ? values[i] : "");
    pthread_mutex_init(&s->hmu, NULL);
    if (m->type == KL_METRIC_HISTOGRAM)
      s->counts = kl_calloc(m->nbuckets + 1, sizeof *s->counts);
    atomic_store(&s->bits, d2b(0));
    kl_hmap_put(&m->series, k, s);
  }
  pthread_mutex_unlock(&m->mu);
  kl_buf_free(&key);
  return s;
}

kl_metric_series *kl_metric_withv_(kl_metric *m, size_t n, ...) {
  if (!m || n != m->nlabels || n > KL_METRICS_MAX_LABELS) return NULL;
  const char *vals[KL_METRICS_MAX_LABELS];
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++) vals[i] = va_arg(ap, const char *);
  va_end(ap);
  return kl_metric_with(m, vals, n);
}

static bool is(kl_metric_series *s, int type) {
  return s && s->fam->type == type;
}

void kl_counter_add(kl_metric_series *s, double n) {
  if (!is(s, KL_METRIC_COUNTER) || !(n >= 0)) return;
  atomic_add_double(&s->bits, n);
}

void kl_counter_set_total(kl_metric_series *s, double v) {
  if (!is(s, KL_METRIC_COUNTER) || isnan(v)) return;
  uint64_t old = atomic_load(&s->bits);
  while (b2d(old) < v &&
         !atomic_compare_exchange_weak(&s->bits, &old, d2b(v))) {
  }
}

void kl_gauge_set(kl_metric_series *s, double v) {
  if (is(s, KL_METRIC_GAUGE)) atomic_store(&s->bits, d2b(v));
}

void kl_gauge_add(kl_metric_series *s, double v) {
  if (is(s, KL_METRIC_GAUGE)) atomic_add_double(&s->bits, v);
}

void kl_histogram_observe(kl_metric_series *s, double v) {
  if (!is(s, KL_METRIC_HISTOGRAM)) return;
  kl_metric *m = s->fam;
  /* first bucket whose upper bound is >= v (NaN goes to +Inf only) */
  size_t lo = 0, hi = m->nbuckets;
  if (isnan(v)) {
    lo = m->nbuckets;
  } else {
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (m->buckets[mid] >= v)
        hi = mid;
      else
        lo = mid + 1;
    }
  }
  pthread_mutex_lock(&s->hmu);
  s->counts[lo]++;
  s->count++;
  s->sum += v;
  pthread_mutex_unlock(&s->hmu);
}

double kl_metric_series_value(kl_metric_series *s) {
  if (!s) return 0;
  if (s->fam->type != KL_METRIC_HISTOGRAM) return b2d(atomic_load(&s->bits));
  pthread_mutex_lock(&s->hmu);
  double v = s->sum;
  pthread_mutex_unlock(&s->hmu);
  return v;
}

uint64_t kl_metric_series_count(kl_metric_series *s) {
  if (!is(s, KL_METRIC_HISTOGRAM)) return 0;
  pthread_mutex_lock(&s->hmu);
  uint64_t c = s->count;
  pthread_mutex_unlock(&s->hmu);
  return c;
}

/* ---- collectors ----------------------------------------------------- */

static int add_collector(kl_metrics *r, kl_metrics_collect_fn fn, void *ud,
                         bool owned) {
  pthread_mutex_lock(&r->cmu);
  if (r->ncols == r->capcols) {
    r->capcols = r->capcols ? r->capcols * 2 : 8;
    r->cols = kl_realloc(r->cols, r->capcols * sizeof *r->cols);
  }
  int id = r->next_id++;
  r->cols[r->ncols++] = (collector){id, fn, ud, owned};
  pthread_mutex_unlock(&r->cmu);
  return id;
}

int kl_metrics_add_collector(kl_metrics *r, kl_metrics_collect_fn fn,
                             void *ud) {
  return add_collector(r, fn, ud, false);
}

void kl_metrics_remove_collector(kl_metrics *r, int id) {
  pthread_mutex_lock(&r->cmu);
  for (size_t i = 0; i < r->ncols; i++) {
    if (r->cols[i].id != id) continue;
    if (r->cols[i].owned_ud) free(r->cols[i].ud);
    memmove(&r->cols[i], &r->cols[i + 1],
            (r->ncols - i - 1) * sizeof *r->cols);
    r->ncols--;
    break;
  }
  pthread_mutex_unlock(&r->cmu);
}

/* ---- exposition ----------------------------------------------------- */

void kl_metrics_format_value(kl_buf *out, double v) {
  if (isnan(v)) {
    kl_buf_adds(out, "NaN");
    return;
  }
  if (isinf(v)) {
    kl_buf_adds(out, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  if (v == 0) {
    kl_buf_adds(out, signbit(v) ? "-0" : "0");
    return;
  }
  /* shortest digits that round-trip, then Go's 'g' layout: exponent form
   * when the decimal exponent is < -4 or >= 6 (shortest 'g' uses 6) */
  char tmp[64];
  int prec;
  for (prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    if (strtod(tmp, NULL) == v) break;
  }
  const char *e = strchr(tmp, 'e');
  int exp = atoi(e + 1);
  if (exp < -4 || exp >= 6) {
    kl_buf_adds(out, tmp);
    return;
  }
  int decimals = prec - 1 - exp;
  snprintf(tmp, sizeof tmp, "%.*f", decimals > 0 ? decimals : 0, v);
  kl_buf_adds(out, tmp);
}

static void add_label_value(kl_buf *out, const char *v) {
  for (const char *p = v; *p; p++) {
    if (*p == '\\')
      kl_buf_adds(out, "\\\\");
    else if (*p == '"')
      kl_buf_adds(out, "\\\"");
    else if (*p == '\n')
      kl_buf_adds(out, "\\n");
    else
      kl_buf_addc(out, *p);
  }
}

static void add_help(kl_buf *out, const char *h) {
  for (const char *p = h; *p; p++) {
    if (*p == '\\')
      kl_buf_adds(out, "\\\\");
    else if (*p == '\n')
      kl_buf_adds(out, "\\n");
    else
      kl_buf_addc(out, *p);
  }
}

/* name{labels[,le="x"]} value\n */
static void add_sample(kl_buf *out, const kl_metric *m, const char *suffix,
                       const kl_metric_series *s, const char *le, double v) {
  kl_buf_adds(out, m->name);
  kl_buf_adds(out, suffix);
  if (m->nlabels || le) {
    kl_buf_addc(out, '{');
    for (size_t i = 0; i < m->nlabels; i++) {
      if (i) kl_buf_addc(out, ',');
      kl_buf_adds(out, m->labels[i]);
      kl_buf_adds(out, "=\"");
      add_label_value(out, s->values[i]);
      kl_buf_addc(out, '"');
    }
    if (le) {
      if (m->nlabels) kl_buf_addc(out, ',');
      kl_buf_adds(out, "le=\"");
      kl_buf_adds(out, le);
      kl_buf_addc(out, '"');
    }
    kl_buf_addc(out, '}');
  }
  kl_buf_addc(out, ' ');
  kl_metrics_format_value(out, v);
  kl_buf_addc(out, '\n');
}

static int cmp_series(const void *a, const void *b) {
  const kl_metric_series *x = *(kl_metric_series *const *)a;
  const kl_metric_series *y = *(kl_metric_series *const *)b;
  size_t n = x->fam->nlabels;
  for (size_t i = 0; i < n; i++) {
    int c = strcmp(x->values[i], y->values[i]);
    if (c) return c;
  }
  return 0;
}

static int cmp_fam(const void *a, const void *b) {
  return strcmp((*(kl_metric *const *)a)->name, (*(kl_metric *const *)b)->name);
}

static void expose_family(kl_metric *m, kl_buf *out) {
  kl_buf_adds(out, "# HELP ");
  kl_buf_adds(out, m->name);
  kl_buf_addc(out, ' ');
  add_help(out, m->help);
  kl_buf_adds(out, "\n# TYPE ");
  kl_buf_adds(out, m->name);
  kl_buf_addc(out, ' ');
  kl_buf_adds(out, type_name(m->type));
  kl_buf_addc(out, '\n');

  pthread_mutex_lock(&m->mu);
  size_t n = kl_hmap_len(&m->series), i = 0, k = 0;
  kl_metric_series **ss = kl_malloc((n ? n : 1) * sizeof *ss);
  const char *key;
  void *v;
  while (kl_hmap_next(&m->series, &i, &key, &v)) ss[k++] = v;
  pthread_mutex_unlock(&m->mu); /* series are never freed before the reg */
  qsort(ss, k, sizeof *ss, cmp_series);

  uint64_t *counts = m->type == KL_METRIC_HISTOGRAM
                         ? kl_malloc((m->nbuckets + 1) * sizeof *counts)
                         : NULL;
  kl_buf le = KL_BUF_INIT;
  for (size_t j = 0; j < k; j++) {
    kl_metric_series *s = ss[j];
    if (m->type != KL_METRIC_HISTOGRAM) {
      add_sample(out, m, "", s, NULL, b2d(atomic_load(&s->bits)));
      continue;
    }
    pthread_mutex_lock(&s->hmu);
    memcpy(counts, s->counts, (m->nbuckets + 1) * sizeof *counts);
    uint64_t count = s->count;
    double sum = s->sum;
    pthread_mutex_unlock(&s->hmu);
    uint64_t cum = 0;
    for (size_t b = 0; b < m->nbuckets; b++) {
      cum += counts[b];
      le.len = 0;
      kl_metrics_format_value(&le, m->buckets[b]);
      add_sample(out, m, "_bucket", s, le.data, (double)cum);
    }
    add_sample(out, m, "_bucket", s, "+Inf", (double)count);
    add_sample(out, m, "_sum", s, NULL, sum);
    add_sample(out, m, "_count", s, NULL, (double)count);
  }
  kl_buf_free(&le);
  free(counts);
  free(ss);
}

void kl_metrics_expose(kl_metrics *r, kl_buf *out) {
  pthread_mutex_lock(&r->cmu);
  for (size_t i = 0; i < r->ncols; i++) r->cols[i].fn(r, r->cols[i].ud);
  pthread_mutex_unlock(&r->cmu);

  pthread_mutex_lock(&r->mu);
  size_t n = kl_hmap_len(&r->fams), i = 0, k = 0;
  kl_metric **fs = kl_malloc((n ? n : 1) * sizeof *fs);
  const char *key;
  void *v;
  while (kl_hmap_next(&r->fams, &i, &key, &v)) fs[k++] = v;
  pthread_mutex_unlock(&r->mu); /* families live as long as the registry */
  qsort(fs, k, sizeof *fs, cmp_fam);
  for (size_t j = 0; j < k; j++) expose_family(fs[j], out);
  free(fs);
}

/* ---- standard metrics ----------------------------------------------- */

static kl_std_metrics std_m;
static pthread_once_t std_once = PTHREAD_ONCE_INIT;

static kl_metric *must(int rc, kl_metric *m, char *err) {
  if (rc != 0) {
    kl_log(KL_LOG_ERROR, "metrics", "standard metric: %s",
           err ? err : kl_strerror(rc));
    free(err);
  }
  return m;
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static kl_metric *cnt(const char *name, const char *help,
                      const char *const *labels) {
  kl_metric *m = NULL;
  char *err = NULL;
  int rc = kl_metrics_counter(kl_metrics_default(), name, help, labels, &m,
                              &err);
  return must(rc, m, err);
}

static kl_metric *gau(const char *name, const char *help,
                      const char *const *labels) {
  kl_metric *m = NULL;
  char *err = NULL;
  int rc =
      kl_metrics_gauge(kl_metrics_default(), name, help, labels, &m, &err);
  return must(rc, m, err);
}

static kl_metric *his(const char *name, const char *help,
                      const char *const *labels, const double *b, size_t n) {
  kl_metric *m = NULL;
  char *err = NULL;
  int rc = kl_metrics_histogram(kl_metrics_default(), name, help, labels, b,
                                n, &m, &err);
  return must(rc, m, err);
}

static void std_init(void) {
  /* controller-runtime's reconcile_time_seconds buckets */
  static const double rb[] = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35,
      0.4,   0.45, 0.5,   0.6,  0.7, 0.8,  0.9, 1.0,  1.25, 1.5,
      1.75,  2.0,  2.5,   3.0,  3.5, 4.0,  4.5, 5,    6,    7,
      8,     9,    10,    15,   20,  25,   30,  40,   50,   60};
  /* workqueue's ExponentialBuckets(10e-9, 10, 12) */
  static const double wb[] = {1e-08, 1e-07, 1e-06, 1e-05, 0.0001, 0.001,
                              0.01,  0.1,   1,     10,    100,    1000};
  kl_std_metrics *s = &std_m;
  s->reconcile_total =
      cnt("controller_runtime_reconcile_total",
          "Total number of reconciliations per controller",
          L("controller", "result"));
  s->reconcile_errors_total =
      cnt("controller_runtime_reconcile_errors_total",
          "Total number of reconciliation errors per controller",
          L("controller"));
  s->reconcile_time_seconds =
      his("controller_runtime_reconcile_time_seconds",
          "Length of time per reconciliation per controller", L("controller"),
          rb, sizeof rb / sizeof rb[0]);
  s->active_workers = gau("controller_runtime_active_workers",
                          "Number of currently used workers per controller",
                          L("controller"));
  s->max_concurrent_reconciles =
      gau("controller_runtime_max_concurrent_reconciles",
          "Maximum number of concurrent reconciles per controller",
          L("controller"));
  s->wq_depth = gau("workqueue_depth", "Current depth of workqueue", L("name"));
  s->wq_adds_total = cnt("workqueue_adds_total",
                         "Total number of adds handled by workqueue",
                         L("name"));
  s->wq_retries_total = cnt("workqueue_retries_total",
                            "Total number of retries handled by workqueue",
                            L("name"));
  s->wq_queue_duration_seconds =
      his("workqueue_queue_duration_seconds",
          "How long in seconds an item stays in workqueue before being "
          "requested",
          L("name"), wb, sizeof wb / sizeof wb[0]);
  s->wq_work_duration_seconds =
      his("workqueue_work_duration_seconds",
          "How long in seconds processing an item from workqueue takes.",
          L("name"), wb, sizeof wb / sizeof wb[0]);
  s->wq_unfinished_work_seconds =
      gau("workqueue_unfinished_work_seconds",
          "How many seconds of work has been done that is in progress and "
          "hasn't been observed by work_duration. Large values indicate "
          "stuck threads. One can deduce the number of stuck threads by "
          "observing the rate at which this increases.",
          L("name"));
  s->wq_longest_running_processor_seconds =
      gau("workqueue_longest_running_processor_seconds",
          "How many seconds has the longest running processor for workqueue "
          "been running.",
          L("name"));
  s->rest_requests_total =
      cnt("rest_client_requests_total",
          "Number of HTTP requests, partitioned by status code, method, and "
          "host.",
          L("code", "method", "host"));
  s->informer_relists_total =
      cnt("klua_informer_relists_total",
          "Number of full lists an informer made (start, 410 Gone, errors)",
          L("resource"));
  s->informer_watch_restarts_total =
      cnt("klua_informer_watch_restarts_total",
          "Number of times an informer re-opened its watch", L("resource"));
  s->informer_events_total =
      cnt("klua_informer_events_total",
          "Number of watch events an informer received, by type",
          L("resource", "type"));
  s->informer_objects = gau("klua_informer_objects",
                            "Number of objects in an informer's cache",
                            L("resource"));
  s->lua_errors_total =
      cnt("klua_lua_errors_total",
          "Number of Lua errors raised by a controller's reconcile or hooks",
          L("controller"));
  s->reconcile_aborted_total =
      cnt("klua_reconcile_aborted_total",
          "Number of reconciles aborted (time limit, shutdown, reload)",
          L("controller"));
  s->reloads_total = cnt("klua_reloads_total",
                         "Number of script reloads, by result", L("result"));
  s->leader_master_status =
      gau("leader_election_master_status",
          "Gauge of if the reporting system is master of the relevant lease, "
          "0 indicates backup, 1 indicates master. 'name' is the string used "
          "to identify the lease. Please make sure to group by name.",
          L("name"));
  s->events_dropped_total =
      cnt("klua_events_dropped_total",
          "Number of Kubernetes Events not sent, by reason "
          "(queue_full, spam, error)",
          L("reason"));
}

const kl_std_metrics *kl_std_metrics_get(void) {
  pthread_once(&std_once, std_init);
  return &std_m;
}

/* ---- workqueue bridge ----------------------------------------------- */

typedef struct wq_watch {
  kl_wq *q;
  char name[1];
} wq_watch;

static void collect_wq(kl_metrics *r, void *ud) {
  (void)r;
  wq_watch *w = ud;
  const kl_std_metrics *m = kl_std_metrics_get();
  kl_wq_stats st;
  kl_wq_get_stats(w->q, &st);
  kl_gauge_set(kl_metric_withv(m->wq_depth, w->name), (double)st.depth);
  kl_counter_set_total(kl_metric_withv(m->wq_adds_total, w->name),
                       (double)st.adds_total);
  kl_counter_set_total(kl_metric_withv(m->wq_retries_total, w->name),
                       (double)st.retries_total);
  kl_gauge_set(kl_metric_withv(m->wq_unfinished_work_seconds, w->name),
               st.unfinished_seconds);
  kl_gauge_set(
      kl_metric_withv(m->wq_longest_running_processor_seconds, w->name),
      st.longest_running_seconds);
}

int kl_metrics_watch_workqueue(kl_metrics *r, const char *name,
                               struct kl_wq *q) {
  kl_std_metrics_get();
  size_t n = strlen(name);
  wq_watch *w = kl_malloc(sizeof *w + n);
  w->q = q;
  memcpy(w->name, name, n + 1);
  return add_collector(r, collect_wq, w, true);
}

/* ---- informer bridge ------------------------------------------------ */

typedef struct inf_watch {
  kl_informer *inf;
  char resource[1];
} inf_watch;

static void collect_inf(kl_metrics *r, void *ud) {
  (void)r;
  inf_watch *w = ud;
  const kl_std_metrics *m = kl_std_metrics_get();
  kl_informer_stats st;
  kl_informer_stats_get(w->inf, &st);
  const kl_reflector_stats *rs = &st.reflector;
  const char *res = w->resource;
  kl_counter_set_total(kl_metric_withv(m->informer_relists_total, res),
                       (double)rs->relists);
  kl_counter_set_total(kl_metric_withv(m->informer_watch_restarts_total, res),
                       (double)rs->watch_restarts);
  const struct {
    const char *type;
    uint64_t n;
  } ev[] = {{"ADDED", rs->ev_added},       {"MODIFIED", rs->ev_modified},
            {"DELETED", rs->ev_deleted},   {"BOOKMARK", rs->ev_bookmark},
            {"ERROR", rs->ev_error}};
  for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++)
    kl_counter_set_total(
        kl_metric_withv(m->informer_events_total, res, ev[i].type),
        (double)ev[i].n);
  kl_gauge_set(kl_metric_withv(m->informer_objects, res), (double)st.objects);
}

int kl_metrics_watch_informer(kl_metrics *r, const char *resource,
                              struct kl_informer *inf) {
  kl_std_metrics_get();
  size_t n = strlen(resource);
  inf_watch *w = kl_malloc(sizeof *w + n);
  w->inf = inf;
  memcpy(w->resource, resource, n + 1);
  return add_collector(r, collect_inf, w, true);
}
