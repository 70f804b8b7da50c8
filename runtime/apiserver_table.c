/* apiserver_table.c: meta.k8s.io/v1 Table rendering for the local API
 * server (Accept: application/json;as=Table;g=meta.k8s.io;v=v1), what
 * `kubectl get` asks for. Built-in resources get the columns kube-apiserver
 * prints for them where cheap (Name, Age, plus e.g. Data for configmaps);
 * custom resources use their CRD's additionalPrinterColumns (the JSONPath
 * subset printer columns use: fields, [i], [*], filters [?(@.x=="v")]).
 * Rows carry a PartialObjectMetadata, the full object (includeObject=Object)
 * or null (includeObject=None).
 * Thread-safety: stateless; called from any connection thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apiserver.h"
#include "json.h"

static const char desc_name[] =
    "Name must be unique within a namespace. Is required when creating "
    "resources, although some resources may allow a client to request the "
    "generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot "
    "be updated. More info: "
    "http://kubernetes.io/docs/user-guide/identifiers#names";
static const char desc_age[] =
    "CreationTimestamp is a timestamp representing the server time when this "
    "object was created. It is not guaranteed to be set in happens-before "
    "order across separate operations. Clients may not set this value. It is "
    "represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
    "Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#metadata";

/* How a built-in cell is computed. */
enum {
  C_NAME = 1, C_AGE, C_STR,  /* string at path, "<none>" when absent */
  C_INT,                     /* integer at path, 0 when absent */
  C_COUNT,                   /* members of the object(s) at path[,path2] */
  C_READY_PODS,              /* ready containers / containers */
  C_POD_STATUS, C_RESTARTS,
  C_READY_REPLICAS,          /* status.readyReplicas / spec.replicas */
  C_PORTS,                   /* service ports "80/TCP,..." */
  C_TIME,                    /* the RFC 3339 time itself (CRD Created At) */
};

typedef struct bcol {
  const char *name, *type, *desc;
  int cell;
  const char *path, *path2;
  int priority;
} bcol;

typedef struct btable {
  const char *group, *plural;
  bcol cols[8];
} btable;

#define NAME_COL {"Name", "string", desc_name, C_NAME, NULL, NULL, 0}
#define AGE_COL {"Age", "string", desc_age, C_AGE, NULL, NULL, 0}

static const btable builtin[] = {
    {"", "configmaps",
     {NAME_COL,
      {"Data", "string",
       "Data contains the configuration data. Each key must consist of "
       "alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte "
       "sequences must use the BinaryData field. The keys stored in Data must "
       "not overlap with the keys in the BinaryData field, this is enforced "
       "during validation process.",
       C_COUNT, "data", "binaryData", 0},
      AGE_COL}},
    {"", "secrets",
     {NAME_COL,
      {"Type", "string", "Used to facilitate programmatic handling of secret "
       "data.", C_STR, "type", NULL, 0},
      {"Data", "string", "Data contains the secret data.", C_COUNT, "data",
       "stringData", 0},
      AGE_COL}},
    {"", "namespaces",
     {NAME_COL,
      {"Status", "string", "The status of the namespace", C_STR,
       "status.phase", NULL, 0},
      AGE_COL}},
    {"", "pods",
     {NAME_COL,
      {"Ready", "string", "The aggregate readiness state of this pod for "
       "accepting traffic.", C_READY_PODS, NULL, NULL, 0},
      {"Status", "string", "The aggregate status of the containers in this "
       "pod.", C_POD_STATUS, NULL, NULL, 0},
      {"Restarts", "string", "The number of times the containers in this pod "
       "have been restarted and when the last container in this pod has "
       "restarted.", C_RESTARTS, NULL, NULL, 0},
      AGE_COL,
      {"IP", "string", "IP address allocated to the pod.", C_STR,
       "status.podIP", NULL, 1},
      {"Node", "string", "Name of the Node this pod is assigned to.", C_STR,
       "spec.nodeName", NULL, 1}}},
    {"apps", "deployments",
     {NAME_COL,
      {"Ready", "string", "Number of the pod with ready state",
       C_READY_REPLICAS, NULL, NULL, 0},
      {"Up-to-date", "string", "Total number of non-terminated pods targeted "
       "by this deployment that have the desired template spec.", C_INT,
       "status.updatedReplicas", NULL, 0},
      {"Available", "string", "Total number of available pods (ready for at "
       "least minReadySeconds) targeted by this deployment.", C_INT,
       "status.availableReplicas", NULL, 0},
      AGE_COL}},
    {"apps", "statefulsets",
     {NAME_COL,
      {"Ready", "string", "Number of the pod with ready state",
       C_READY_REPLICAS, NULL, NULL, 0},
      AGE_COL}},
    {"apps", "replicasets",
     {NAME_COL,
      {"Desired", "integer", "Number of desired pods.", C_INT, "spec.replicas",
       NULL, 0},
      {"Current", "integer", "Number of actual replicas.", C_INT,
       "status.replicas", NULL, 0},
      {"Ready", "integer", "The number of ready replicas for this replica "
       "set.", C_INT, "status.readyReplicas", NULL, 0},
      AGE_COL}},
    {"", "services",
     {NAME_COL,
      {"Type", "string", "The type of the service.", C_STR, "spec.type", NULL,
       0},
      {"Cluster-IP", "string", "The cluster IP of the service.", C_STR,
       "spec.clusterIP", NULL, 0},
      {"Port(s)", "string", "The ports of the service.", C_PORTS, NULL, NULL,
       0},
      AGE_COL}},
    {"coordination.k8s.io", "leases",
     {NAME_COL,
      {"Holder", "string", "The holder of the lease.", C_STR,
       "spec.holderIdentity", NULL, 0},
      AGE_COL}},
    {"apiextensions.k8s.io", "customresourcedefinitions",
     {NAME_COL,
      {"Created At", "date", desc_age, C_TIME, "metadata.creationTimestamp",
       NULL, 0}}},
};

static const bcol default_cols[] = {NAME_COL, AGE_COL};

/* A column ready to render (built-in or from a CRD). */
typedef struct col {
  const char *name, *type, *format, *desc;
  int priority;
  int cell;      /* C_* for built-ins; 0: CRD JSONPath */
  const char *path, *path2;
} col;

typedef struct cols {
  col *v;
  size_t n;
  cJSON *crd; /* keeps the CRD strings alive */
  char **owned;
  size_t nowned;
} cols;

static void cols_free(cols *c) {
  free(c->v);
  cJSON_Delete(c->crd);
  for (size_t i = 0; i < c->nowned; i++) free(c->owned[i]);
  free(c->owned);
}

static void from_builtin(cols *c, const bcol *b, size_t n) {
  c->v = kl_calloc(n ? n : 1, sizeof *c->v);
  for (size_t i = 0; i < n && b[i].name; i++) {
    c->v[c->n++] = (col){b[i].name, b[i].type, "", b[i].desc, b[i].priority,
                         b[i].cell, b[i].path, b[i].path2};
    if (b[i].cell == C_NAME) c->v[c->n - 1].format = "name";
  }
}

/* CRD columns: Name, then spec.versions[version].additionalPrinterColumns,
 * or Age when there are none (what kube-apiserver does). */
static void from_crd(kl_apiserver *s, const kl_as_resource *res, cols *c) {
  kl_as_resource *crdres =
      kl_as_find(s, "apiextensions.k8s.io", "v1", "customresourcedefinitions");
  cJSON *apc = NULL;
  if (crdres && res->crd_name) {
    kl_as_result r = KL_AS_RESULT_INIT;
    kl_as_opts o;
    memset(&o, 0, sizeof o);
    kl_as_get(s, crdres, "", res->crd_name, NULL, &o, &r);
    if (r.code == 200) c->crd = cJSON_ParseWithLength(r.body.data, r.body.len);
    kl_as_result_free(&r);
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(c->crd, "spec"), "versions");
    const cJSON *v;
    cJSON_ArrayForEach(v, vs) {
      const cJSON *nm = cJSON_GetObjectItemCaseSensitive(v, "name");
      if (cJSON_IsString(nm) && !strcmp(nm->valuestring, res->version))
        apc = cJSON_GetObjectItemCaseSensitive(v, "additionalPrinterColumns");
    }
  }
  size_t n = cJSON_GetArraySize(apc);
  c->v = kl_calloc(n + 2, sizeof *c->v);
  c->owned = kl_calloc(n + 1, sizeof *c->owned);
  c->v[c->n++] = (col){"Name", "string", "name", desc_name, 0, C_NAME, NULL,
                       NULL};
  if (!n) {
    c->v[c->n++] = (col){"Age", "date", "", desc_age, 0, C_AGE, NULL, NULL};
    return;
  }
  const cJSON *a;
  cJSON_ArrayForEach(a, apc) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(a, "name");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(a, "type");
    const cJSON *fm = cJSON_GetObjectItemCaseSensitive(a, "format");
    const cJSON *de = cJSON_GetObjectItemCaseSensitive(a, "description");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(a, "priority");
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(a, "jsonPath");
    if (!cJSON_IsString(nm) || !cJSON_IsString(jp)) continue;
    col k = {nm->valuestring, cJSON_IsString(ty) ? ty->valuestring : "string",
             cJSON_IsString(fm) ? fm->valuestring : "", NULL,
             cJSON_IsNumber(pr) ? pr->valueint : 0, 0, jp->valuestring, NULL};
    if (cJSON_IsString(de)) {
      k.desc = de->valuestring;
    } else {
      char *d = kl_sprintf("Custom resource definition column (in JSONPath "
                           "format): %s", jp->valuestring);
      c->owned[c->nowned++] = d;
      k.desc = d;
    }
    c->v[c->n++] = k;
  }
}

static void columns_for(kl_apiserver *s, const kl_as_resource *res,
                        cols *c) {
  memset(c, 0, sizeof *c);
  if (res->custom) {
    from_crd(s, res, c);
    return;
  }
  for (size_t i = 0; i < sizeof builtin / sizeof *builtin; i++) {
    if (!strcmp(builtin[i].group, res->group) &&
        !strcmp(builtin[i].plural, res->plural)) {
      size_t n = 0;
      while (n < 8 && builtin[i].cols[n].name) n++;
      from_builtin(c, builtin[i].cols, n);
      return;
    }
  }
  from_builtin(c, default_cols, 2);
}

/* ---- cells ------------------------------------------------------------------ */

/* kubectl's duration.HumanDuration. */
static void human_duration(kl_buf *b, long long sec) {
  if (sec < -1) {
    kl_buf_adds(b, "<invalid>");
    return;
  }
  if (sec < 0) sec = 0;
  long long min = sec / 60, hours = sec / 3600;
  if (sec < 120) kl_buf_addf(b, "%llds", sec);
  else if (min < 10 && sec % 60) kl_buf_addf(b, "%lldm%llds", min, sec % 60);
  else if (min < 180) kl_buf_addf(b, "%lldm", min);
  else if (hours < 8 && min % 60) kl_buf_addf(b, "%lldh%lldm", hours, min % 60);
  else if (hours < 48) kl_buf_addf(b, "%lldh", hours);
  else if (hours < 192 && hours % 24)
    kl_buf_addf(b, "%lldd%lldh", hours / 24, hours % 24);
  else if (hours < 24 * 365 * 2) kl_buf_addf(b, "%lldd", hours / 24);
  else if (hours < 24 * 365 * 8 && (hours / 24) % 365)
    kl_buf_addf(b, "%lldy%lldd", hours / 24 / 365, (hours / 24) % 365);
  else kl_buf_addf(b, "%lldy", hours / 24 / 365);
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.frac]Z"; false when not such a time. */
static bool parse_time(kl_span v, time_t *out) {
  char t[40];
  if (kl_json_type(v) != 's' || v.n < 22 || v.n > sizeof t) return false;
  memcpy(t, v.p + 1, v.n - 2);
  t[v.n - 2] = 0;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon,
             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return false;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  *out = timegm(&tm);
  return true;
}

static void cell_age(kl_buf *b, kl_span ts) {
  time_t t;
  if (!parse_time(ts, &t)) {
    kl_buf_adds(b, "\"<unknown>\"");
    return;
  }
  kl_buf_addc(b, '"');
  human_duration(b, (long long)(time(NULL) - t));
  kl_buf_addc(b, '"');
}

static long long num_at(kl_span obj, const char *path, long long dflt) {
  kl_span v;
  if (!kl_json_get(obj, path, &v) || kl_json_type(v) != 'n') return dflt;
  return strtoll(v.p, NULL, 10);
}

static long count_members(kl_span obj, const char *path) {
  kl_span v, k, x;
  if (!path || !kl_json_get(obj, path, &v) || kl_json_type(v) != 'o') return 0;
  long n = 0;
  kl_json_iter it;
  kl_json_iter_init(&it, v);
  while (kl_json_next(&it, &k, &x)) n++;
  return n;
}

static void add_span_string(kl_buf *b, kl_span v) {
  char t = kl_json_type(v);
  if (t == 's') {
    kl_buf_add(b, v.p, v.n);
  } else {
    kl_buf tmp = KL_BUF_INIT;
    kl_json_compact(v.p, v.n, NULL, &tmp);
    kl_json_quote(b, tmp.data ? tmp.data : "", tmp.len);
    kl_buf_free(&tmp);
  }
}

static void cell_builtin(kl_buf *b, const col *c, kl_span obj) {
  kl_span v;
  switch (c->cell) {
  case C_NAME:
    if (kl_json_get(obj, "metadata.name", &v)) kl_buf_add(b, v.p, v.n);
    else kl_buf_adds(b, "\"\"");
    return;
  case C_AGE:
    if (kl_json_get(obj, "metadata.creationTimestamp", &v)) cell_age(b, v);
    else kl_buf_adds(b, "\"<unknown>\"");
    return;
  case C_TIME:
  case C_STR:
    if (kl_json_get(obj, c->path, &v) && kl_json_type(v) != 'z')
      add_span_string(b, v);
    else kl_buf_adds(b, "\"<none>\"");
    return;
  case C_INT:
    kl_buf_addf(b, "%lld", num_at(obj, c->path, 0));
    return;
  case C_COUNT:
    kl_buf_addf(b, "%ld", count_members(obj, c->path) +
                              count_members(obj, c->path2));
    return;
  case C_READY_REPLICAS:
    kl_buf_addf(b, "\"%lld/%lld\"", num_at(obj, "status.readyReplicas", 0),
                num_at(obj, "spec.replicas", 1));
    return;
  case C_READY_PODS:
  case C_RESTARTS: {
    long total = 0, ready = 0, restarts = 0;
    kl_span arr, k, x, r;
    if (kl_json_get(obj, "spec.containers", &arr) &&
        kl_json_type(arr) == 'a') {
      kl_json_iter it;
      kl_json_iter_init(&it, arr);
      while (kl_json_next(&it, &k, &x)) total++;
    }
    if (kl_json_get(obj, "status.containerStatuses", &arr) &&
        kl_json_type(arr) == 'a') {
      kl_json_iter it;
      kl_json_iter_init(&it, arr);
      while (kl_json_next(&it, &k, &x)) {
        if (kl_json_get(x, "ready", &r) && kl_json_type(r) == 't') ready++;
        restarts += (long)num_at(x, "restartCount", 0);
      }
    }
    if (c->cell == C_READY_PODS) kl_buf_addf(b, "\"%ld/%ld\"", ready, total);
    else kl_buf_addf(b, "\"%ld\"", restarts);
    return;
  }
  case C_POD_STATUS:
    if (kl_json_get(obj, "metadata.deletionTimestamp", &v) &&
        kl_json_type(v) == 's')
      kl_buf_adds(b, "\"Terminating\"");
    else if (kl_json_get(obj, "status.phase", &v) && kl_json_type(v) == 's')
      kl_buf_add(b, v.p, v.n);
    else kl_buf_adds(b, "\"Pending\"");
    return;
  case C_PORTS: {
    kl_span arr, k, x, p;
    kl_buf t = KL_BUF_INIT;
    if (kl_json_get(obj, "spec.ports", &arr) && kl_json_type(arr) == 'a') {
      kl_json_iter it;
      kl_json_iter_init(&it, arr);
      while (kl_json_next(&it, &k, &x)) {
        if (t.len) kl_buf_addc(&t, ',');
        kl_buf_addf(&t, "%lld", num_at(x, "port", 0));
        if (kl_json_get(x, "nodePort", &p) && kl_json_type(p) == 'n')
          kl_buf_addf(&t, ":%lld", num_at(x, "nodePort", 0));
        char *proto = kl_json_get(x, "protocol", &p) ? kl_json_strdup(p) : NULL;
        kl_buf_addf(&t, "/%s", proto ? proto : "TCP");
        free(proto);
      }
    }
    if (!t.len) kl_buf_adds(&t, "<none>");
    kl_json_quote(b, t.data, t.len);
    kl_buf_free(&t);
    return;
  }
  }
  kl_buf_adds(b, "null");
}

/* ---- JSONPath (the subset printer columns use) ------------------------------
 * kube-apiserver evaluates additionalPrinterColumns with client-go's
 * jsonpath and uses the first result only (results[0][0]); a depth-first walk
 * in document order that stops at the first complete match gives the same
 * value. Supported: `$`, `{...}` around the path, `.name`, `.*`, `['name']`,
 * `[n]` (negative from the end), `[a:b]`, `[*]`, and filters
 * `[?(@.path OP literal)]` with OP one of == != < <= > >= (literal: a quoted
 * string, a number, true, false or null) or `[?(@.path)]` (exists), followed
 * by any further steps. */

/* The position of the ']' closing the '[' at s, or NULL. */
static const char *jp_close(const char *s, const char *end) {
  int depth = 0;
  char q = 0;
  for (const char *p = s; p < end; p++) {
    if (q) {
      if (*p == '\\' && p + 1 < end) p++;
      else if (*p == q) q = 0;
    } else if (*p == '"' || *p == '\'') {
      q = *p;
    } else if (*p == '[' || *p == '(') {
      depth++;
    } else if (*p == ']' || *p == ')') {
      if (--depth == 0) return *p == ']' ? p : NULL;
    }
  }
  return NULL;
}

static bool jp_eval(kl_span cur, const char *s, const char *end, kl_span *out);

/* Member name (n bytes at k, unescaped) of an object. */
static bool jp_member(kl_span cur, const char *k, size_t n, kl_span *out) {
  if (kl_json_type(cur) != 'o') return false;
  char *name = kl_strndup(k, n);
  const char *const key[1] = {name};
  bool ok = kl_json_getv(cur, key, 1, out);
  free(name);
  return ok;
}

/* Trims blanks from both ends of [*s, *e). */
static void jp_trim(const char **s, const char **e) {
  while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
  while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

/* Compares a JSON value with a filter literal [l, le): <0, 0, >0, or 2 when
 * they are not comparable (other types). */
static int jp_cmp(kl_span v, const char *l, const char *le) {
  char t = kl_json_type(v);
  if (le > l && (*l == '"' || *l == '\'')) {
    if (t != 's' || le - l < 2 || le[-1] != *l) return 2;
    char *lit = kl_strndup(l + 1, (size_t)(le - l - 2));
    char *val = kl_json_strdup(v);
    int c = strcmp(val ? val : "", lit);
    free(lit);
    free(val);
    return c < 0 ? -1 : c > 0;
  }
  size_t n = (size_t)(le - l);
  if (n == 4 && !memcmp(l, "true", 4)) return t == 't' ? 0 : 2;
  if (n == 5 && !memcmp(l, "false", 5)) return t == 'f' ? 0 : 2;
  if (n == 4 && !memcmp(l, "null", 4)) return t == 'z' ? 0 : 2;
  if (t != 'n') return 2;
  char *lit = kl_strndup(l, n), *e;
  double x = strtod(lit, &e);
  bool bad = e == lit || *e;
  free(lit);
  if (bad) return 2;
  double y = strtod(v.p, NULL);
  return y < x ? -1 : y > x;
}

/* Evaluates a filter expression [s, e) (inside "?( )") on one element. */
static bool jp_filter(kl_span el, const char *s, const char *e) {
  jp_trim(&s, &e);
  static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">"};
  const char *op = NULL, *q = NULL;
  size_t opl = 0;
  char quote = 0;
  for (const char *p = s; p < e && !op; p++) {
    if (quote) {
      if (*p == '\\' && p + 1 < e) p++;
      else if (*p == quote) quote = 0;
      continue;
    }
    if (*p == '"' || *p == '\'') {
      quote = *p;
      continue;
    }
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
      size_t l = strlen(ops[i]);
      if ((size_t)(e - p) >= l && !memcmp(p, ops[i], l)) {
        op = ops[i];
        opl = l;
        q = p;
        break;
      }
    }
  }
  const char *ls = s, *le = op ? q : e;
  jp_trim(&ls, &le);
  if (le == ls || *ls != '@') return false;
  kl_span v;
  if (!jp_eval(el, ls + 1, le, &v)) return false;
  if (!op) return true;
  const char *rs = q + opl, *re = e;
  jp_trim(&rs, &re);
  int c = jp_cmp(v, rs, re);
  if (!strcmp(op, "!=")) return c != 0;
  if (c == 2) return false;
  if (!strcmp(op, "==")) return c == 0;
  if (!strcmp(op, "<")) return c < 0;
  if (!strcmp(op, "<=")) return c <= 0;
  if (!strcmp(op, ">")) return c > 0;
  return c >= 0;
}

/* Evaluates the bracket step [s, e) (without the brackets) on cur, then the
 * rest of the path on each selected value; the first full match wins. */
static bool jp_bracket(kl_span cur, const char *s, const char *e,
                       const char *rest, const char *end, kl_span *out) {
  jp_trim(&s, &e);
  char t = kl_json_type(cur);
  if (e > s && (*s == '\'' || *s == '"')) {
    kl_span v;
    return e - s >= 2 && e[-1] == *s &&
           jp_member(cur, s + 1, (size_t)(e - s - 2), &v) &&
           jp_eval(v, rest, end, out);
  }
  if (t != 'a' && t != 'o') return false;
  bool all = e - s == 1 && *s == '*';
  bool filter = e - s >= 3 && s[0] == '?' && s[1] == '(' && e[-1] == ')';
  kl_json_iter it;
  kl_span k, x;
  if (all || filter) {
    kl_json_iter_init(&it, cur);
    while (kl_json_next(&it, &k, &x)) {
      if (filter && !jp_filter(x, s + 2, e - 1)) continue;
      if (jp_eval(x, rest, end, out)) return true;
    }
    return false;
  }
  if (t != 'a') return false;
  /* [n] or [a:b] (b exclusive; negatives count from the end) */
  long len = 0;
  kl_json_iter_init(&it, cur);
  while (kl_json_next(&it, &k, &x)) len++;
  char *txt = kl_strndup(s, (size_t)(e - s)), *p;
  long a = strtol(txt, &p, 10), b;
  bool ok = p != txt || *p == ':';
  if (a < 0) a += len;
  b = a + 1;
  if (*p == ':') {
    char *q = p + 1;
    b = strtol(q, &p, 10);
    if (p == q) b = len;
    else if (b < 0) b += len;
  }
  ok = ok && !*p;
  free(txt);
  if (!ok) return false;
  if (a < 0) a = 0;
  if (b > len) b = len;
  long i = 0;
  kl_json_iter_init(&it, cur);
  while (kl_json_next(&it, &k, &x)) {
    if (i >= a && i < b && jp_eval(x, rest, end, out)) return true;
    if (++i >= b) break;
  }
  return false;
}

static bool jp_eval(kl_span cur, const char *s, const char *end,
                    kl_span *out) {
  while (s < end && (*s == ' ' || *s == '$')) s++;
  if (s >= end) {
    *out = cur;
    return true;
  }
  if (*s == '[') {
    const char *c = jp_close(s, end);
    return c && jp_bracket(cur, s + 1, c, c + 1, end, out);
  }
  if (*s != '.') return false;
  s++;
  const char *e = s;
  while (e < end && *e != '.' && *e != '[') e++;
  if (e == s) return e < end && *e == '[' && jp_eval(cur, e, end, out);
  if (e - s == 1 && *s == '*') {
    char t = kl_json_type(cur);
    if (t != 'o' && t != 'a') return false;
    kl_json_iter it;
    kl_span k, x;
    kl_json_iter_init(&it, cur);
    while (kl_json_next(&it, &k, &x))
      if (jp_eval(x, e, end, out)) return true;
    return false;
  }
  kl_span v;
  return jp_member(cur, s, (size_t)(e - s), &v) && jp_eval(v, e, end, out);
}

/* The first value the printer-column JSONPath selects in obj. */
static bool jsonpath(kl_span obj, const char *path, kl_span *out) {
  const char *s = path, *e = path + strlen(path);
  while (s < e && *s == ' ') s++;
  while (e > s && e[-1] == ' ') e--;
  if (e - s >= 2 && *s == '{' && e[-1] == '}') {
    s++;
    e--;
  }
  return jp_eval(obj, s, e, out);
}

static void cell_crd(kl_buf *b, const col *c, kl_span obj) {
  kl_span v;
  if (!jsonpath(obj, c->path, &v) || kl_json_type(v) == 'z') {
    kl_buf_adds(b, "null");
    return;
  }
  char t = kl_json_type(v);
  if (!strcmp(c->type, "date") && t == 's') {
    cell_age(b, v);
  } else if ((!strcmp(c->type, "integer") || !strcmp(c->type, "number")) &&
             t == 'n') {
    kl_buf_add(b, v.p, v.n);
  } else if (!strcmp(c->type, "boolean") && (t == 't' || t == 'f')) {
    kl_buf_add(b, v.p, v.n);
  } else {
    add_span_string(b, v);
  }
}

/* ---- rendering -------------------------------------------------------------- */

static const char *table_api_version(const kl_as_opts *o) {
  const char *a = o && o->accept ? o->accept : "";
  bool v1 = false, beta = false;
  const char *p = a;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    char *m = kl_strndup(p, n);
    if (strstr(m, "as=Table")) {
      char *v = strstr(m, "v=v1");
      if (v && (v[4] == 0 || v[4] == ';' || v[4] == ' ')) v1 = true;
      if (strstr(m, "v=v1beta1")) beta = true;
    }
    free(m);
    if (!e) break;
    p = e + 1;
  }
  return beta && !v1 ? "meta.k8s.io/v1beta1" : "meta.k8s.io/v1";
}

static void add_columns(kl_buf *b, const cols *c) {
  kl_buf_adds(b, "\"columnDefinitions\":[");
  for (size_t i = 0; i < c->n; i++) {
    const col *k = &c->v[i];
    if (i) kl_buf_addc(b, ',');
    kl_buf_adds(b, "{\"name\":");
    kl_json_quote(b, k->name, strlen(k->name));
    kl_buf_adds(b, ",\"type\":");
    kl_json_quote(b, k->type, strlen(k->type));
    kl_buf_adds(b, ",\"format\":");
    kl_json_quote(b, k->format, strlen(k->format));
    kl_buf_adds(b, ",\"description\":");
    kl_json_quote(b, k->desc ? k->desc : "", k->desc ? strlen(k->desc) : 0);
    kl_buf_addf(b, ",\"priority\":%d}", k->priority);
  }
  kl_buf_addc(b, ']');
}

static void add_row(kl_buf *b, const cols *c, const kl_obj *obj,
                    const kl_as_opts *o) {
  kl_span sp = kl_obj_span(obj);
  kl_buf_adds(b, "{\"cells\":[");
  for (size_t i = 0; i < c->n; i++) {
    if (i) kl_buf_addc(b, ',');
    if (c->v[i].cell) cell_builtin(b, &c->v[i], sp);
    else cell_crd(b, &c->v[i], sp);
  }
  kl_buf_adds(b, "],\"object\":");
  const char *inc = o ? o->include_object : NULL;
  kl_span md;
  if (inc && !strcmp(inc, "None")) {
    kl_buf_adds(b, "null");
  } else if (inc && !strcmp(inc, "Object")) {
    kl_buf_add(b, sp.p, sp.n);
  } else {
    kl_buf_adds(b, "{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":"
                   "\"meta.k8s.io/v1\",\"metadata\":");
    if (kl_json_get(sp, "metadata", &md)) kl_buf_add(b, md.p, md.n);
    else kl_buf_adds(b, "{}");
    kl_buf_addc(b, '}');
  }
  kl_buf_addc(b, '}');
}

int kl_as_table_list(kl_apiserver *s, const kl_as_resource *res,
                     kl_obj *const *items, size_t n, const char *rv,
                     const char *cont, long remaining, const kl_as_opts *o,
                     kl_buf *out) {
  cols c;
  columns_for(s, res, &c);
  kl_buf_addf(out, "{\"kind\":\"Table\",\"apiVersion\":\"%s\",\"metadata\":{",
              table_api_version(o));
  kl_buf_adds(out, "\"resourceVersion\":");
  kl_json_quote(out, rv ? rv : "", rv ? strlen(rv) : 0);
  if (cont && *cont) {
    kl_buf_adds(out, ",\"continue\":");
    kl_json_quote(out, cont, strlen(cont));
    if (remaining >= 0)
      kl_buf_addf(out, ",\"remainingItemCount\":%ld", remaining);
  }
  kl_buf_adds(out, "},");
  add_columns(out, &c);
  kl_buf_adds(out, ",\"rows\":[");
  for (size_t i = 0; i < n; i++) {
    if (i) kl_buf_addc(out, ',');
    add_row(out, &c, items[i], o);
  }
  kl_buf_adds(out, "]}");
  cols_free(&c);
  return 0;
}

int kl_as_table_object(kl_apiserver *s, const kl_as_resource *res,
                       const kl_obj *obj, bool first, const kl_as_opts *o,
                       kl_buf *out) {
  cols c;
  columns_for(s, res, &c);
  const char *rv = kl_obj_resource_version(obj);
  kl_buf_addf(out, "{\"kind\":\"Table\",\"apiVersion\":\"%s\",\"metadata\":{"
                   "\"resourceVersion\":",
              table_api_version(o));
  kl_json_quote(out, rv ? rv : "", rv ? strlen(rv) : 0);
  kl_buf_adds(out, "},");
  if (first) add_columns(out, &c);
  else kl_buf_adds(out, "\"columnDefinitions\":null");
  kl_buf_adds(out, ",\"rows\":[");
  add_row(out, &c, obj, o);
  kl_buf_adds(out, "]}");
  cols_free(&c);
  return 0;
}
