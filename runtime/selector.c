/* selector.c: label and field selectors; see selector.h. The label parser
 * follows k8s.io/apimachinery/pkg/labels (v1.20) token by token so that
 * its error messages are the ones kube-apiserver returns. */
#include "selector.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- label selectors ------------------------------------------------- */

typedef struct req {
  char *key;
  kl_sel_op op;
  char **vals; /* sorted, unique */
  size_t nvals;
  long long num; /* for GT/LT */
} req;

struct kl_selector {
  req *reqs;
  size_t n;
  bool nothing;
};

static void req_free(req *r) {
  free(r->key);
  for (size_t i = 0; i < r->nvals; i++) free(r->vals[i]);
  free(r->vals);
}

void kl_selector_free(kl_selector *sel) {
  if (!sel) return;
  for (size_t i = 0; i < sel->n; i++) req_free(&sel->reqs[i]);
  free(sel->reqs);
  free(sel);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_req(const void *a, const void *b) {
  const req *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c) return c;
  if (x->op != y->op) return x->op < y->op ? -1 : 1;
  for (size_t i = 0; i < x->nvals && i < y->nvals; i++) {
    c = strcmp(x->vals[i], y->vals[i]);
    if (c) return c;
  }
  return x->nvals < y->nvals ? -1 : x->nvals > y->nvals;
}

/* Sorts and deduplicates a value list in place. */
static void uniq_sorted(char **v, size_t *n) {
  if (*n < 2) return;
  qsort(v, *n, sizeof *v, cmp_str);
  size_t w = 1;
  for (size_t i = 1; i < *n; i++) {
    if (strcmp(v[i], v[w - 1]) == 0) {
      free(v[i]);
    } else {
      v[w++] = v[i];
    }
  }
  *n = w;
}

/* Validation, with the messages of k8s.io/apimachinery/pkg/util/validation. */
#define QNAME_FMT "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
#define QNAME_MSG                                                            \
  "must consist of alphanumeric characters, '-', '_' or '.', and must "     \
  "start and end with an alphanumeric character (e.g. 'MyName',  or "       \
  "'my.name',  or '123-abc', regex used for validation is '" QNAME_FMT "')"
#define DNS1123_MSG                                                          \
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric " \
  "characters, '-' or '.', and must start and end with an alphanumeric "    \
  "character (e.g. 'example.com', regex used for validation is "           \
  "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
#define LVALUE_MSG                                                           \
  "a valid label must be an empty string or consist of alphanumeric "       \
  "characters, '-', '_' or '.', and must start and end with an "            \
  "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "   \
  "regex used for validation is '(" QNAME_FMT ")?')"

static bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9');
}

static bool qname_ok(const char *s, size_t n) {
  if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1])) return false;
  for (size_t i = 0; i < n; i++)
    if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
      return false;
  return true;
}

static bool dns1123_subdomain_ok(const char *s, size_t n) {
  if (n == 0) return false;
  size_t i = 0;
  while (i < n) { /* one label */
    size_t st = i;
    while (i < n && s[i] != '.') {
      char c = s[i];
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
        return false;
      i++;
    }
    if (i == st || s[st] == '-' || s[i - 1] == '-') return false;
    if (i < n) {
      i++; /* '.' */
      if (i == n) return false;
    }
  }
  return true;
}

/* Returns NULL when key is a valid qualified name, else a NEW reason. */
static char *qualified_name_error(const char *k) {
  const char *slash = strchr(k, '/');
  const char *name = k;
  if (slash) {
    if (strchr(slash + 1, '/'))
      return kl_strdup("a qualified name " QNAME_MSG
                       " with an optional DNS subdomain prefix and '/' "
                       "(e.g. 'example.com/MyName')");
    size_t pn = (size_t)(slash - k);
    if (pn == 0) return kl_strdup("prefix part must be non-empty");
    if (pn > 253)
      return kl_strdup("prefix part must be no more than 253 characters");
    if (!dns1123_subdomain_ok(k, pn)) return kl_strdup("prefix part " DNS1123_MSG);
    name = slash + 1;
  }
  size_t n = strlen(name);
  if (n == 0) return kl_strdup("name part must be non-empty");
  if (n > 63) return kl_strdup("name part must be no more than 63 characters");
  if (!qname_ok(name, n)) return kl_strdup("name part " QNAME_MSG);
  return NULL;
}

static char *label_key_error(const char *k) {
  char *why = qualified_name_error(k);
  if (!why) return NULL;
  char *m = kl_sprintf("invalid label key \"%s\": %s", k, why);
  free(why);
  return m;
}

static char *label_value_error(const char *k, const char *v) {
  size_t n = strlen(v);
  const char *why = NULL;
  if (n > 63)
    why = "must be no more than 63 characters";
  else if (n > 0 && !qname_ok(v, n))
    why = LVALUE_MSG;
  if (!why) return NULL;
  return kl_sprintf("invalid label value: \"%s\": at key: \"%s\": %s", v, k,
                    why);
}

/* Validates a requirement as labels.NewRequirement; takes ownership of
 * key and vals (freed on error). Returns NULL or a NEW message. */
static char *req_make(req *r, char *key, kl_sel_op op, char **vals,
                      size_t nvals) {
  r->key = key;
  r->op = op;
  r->vals = vals;
  r->nvals = nvals;
  r->num = 0;
  char *e = label_key_error(key);
  if (e) goto fail;
  switch (op) {
  case KL_SEL_IN:
  case KL_SEL_NOTIN:
    if (nvals == 0) {
      e = kl_strdup("for 'in', 'notin' operators, values set can't be empty");
      goto fail;
    }
    break;
  case KL_SEL_EQ:
  case KL_SEL_NEQ:
    if (nvals != 1) {
      e = kl_strdup("exact-match compatibility requires one single value");
      goto fail;
    }
    break;
  case KL_SEL_EXISTS:
  case KL_SEL_NOTEXISTS:
    if (nvals != 0) {
      e = kl_strdup("values set must be empty for exists and does not exist");
      goto fail;
    }
    break;
  case KL_SEL_GT:
  case KL_SEL_LT: {
    if (nvals != 1) {
      e = kl_strdup("for 'Gt', 'Lt' operators, exactly one value is required");
      goto fail;
    }
    char *end;
    errno = 0;
    r->num = strtoll(vals[0], &end, 10);
    if (errno || end == vals[0] || *end) {
      e = kl_strdup("for 'Gt', 'Lt' operators, the value must be an integer");
      goto fail;
    }
    break;
  }
  }
  for (size_t i = 0; i < nvals; i++)
    if ((e = label_value_error(key, vals[i]))) goto fail;
  uniq_sorted(r->vals, &r->nvals);
  return NULL;
fail:
  req_free(r);
  memset(r, 0, sizeof *r);
  return e;
}

static void sel_push(kl_selector *sel, size_t *cap, const req *r) {
  if (sel->n == *cap) {
    *cap = *cap ? *cap * 2 : 4;
    sel->reqs = kl_realloc(sel->reqs, *cap * sizeof *sel->reqs);
  }
  sel->reqs[sel->n++] = *r;
}

static void sel_finish(kl_selector *sel) {
  if (sel->n > 1) qsort(sel->reqs, sel->n, sizeof *sel->reqs, cmp_req);
}

/* The lexer of labels.Parse. */
enum {
  T_ERR, T_END, T_ID, T_NOTEXIST /* ! */, T_EQ, T_DEQ, T_NEQ, T_IN, T_NOTIN,
  T_GT, T_LT, T_OPEN, T_CLOSE, T_COMMA
};

typedef struct tok {
  int t;
  const char *lit;
  size_t n;
} tok;

typedef struct lexer {
  const char *s;
  size_t pos, len;
} lexer;

static bool is_special(char c) {
  return c == '=' || c == '!' || c == '(' || c == ')' || c == ',' ||
         c == '>' || c == '<';
}

static bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static tok lex(lexer *lx) {
  while (lx->pos < lx->len && is_ws(lx->s[lx->pos])) lx->pos++;
  tok t = {T_END, "", 0};
  if (lx->pos >= lx->len) return t;
  const char *p = lx->s + lx->pos;
  char c = *p;
  if (is_special(c)) {
    t.lit = p;
    if ((c == '!' || c == '=') && lx->pos + 1 < lx->len && p[1] == '=') {
      t.t = c == '!' ? T_NEQ : T_DEQ;
      t.n = 2;
    } else {
      t.n = 1;
      switch (c) {
      case '=': t.t = T_EQ; break;
      case '!': t.t = T_NOTEXIST; break;
      case '(': t.t = T_OPEN; break;
      case ')': t.t = T_CLOSE; break;
      case ',': t.t = T_COMMA; break;
      case '>': t.t = T_GT; break;
      default: t.t = T_LT; break;
      }
    }
    lx->pos += t.n;
    return t;
  }
  size_t st = lx->pos;
  while (lx->pos < lx->len && !is_ws(lx->s[lx->pos]) &&
         !is_special(lx->s[lx->pos]))
    lx->pos++;
  t.lit = p;
  t.n = lx->pos - st;
  if (t.n == 2 && memcmp(p, "in", 2) == 0)
    t.t = T_IN;
  else if (t.n == 5 && memcmp(p, "notin", 5) == 0)
    t.t = T_NOTIN;
  else
    t.t = T_ID;
  return t;
}

/* The parser reads all tokens first, like labels.Parser. */
typedef struct parser {
  tok *toks;
  size_t n, pos;
} parser;

/* In "values" context, in/notin read as identifiers. */
static tok p_peek(parser *p, bool values) {
  tok t = p->toks[p->pos];
  if (values && (t.t == T_IN || t.t == T_NOTIN)) t.t = T_ID;
  return t;
}
static tok p_next(parser *p, bool values) {
  tok t = p_peek(p, values);
  if (p->pos + 1 < p->n) p->pos++;
  return t;
}

static char *found_err(tok t, const char *expected) {
  return kl_sprintf("found '%.*s', expected: %s", (int)t.n, t.lit, expected);
}

/* values list of "in (...)": returns NULL or a NEW error. */
static char *parse_values(parser *p, char ***vals, size_t *nvals) {
  size_t cap = 0;
  *vals = NULL;
  *nvals = 0;
#define ADDV(str, len)                                                   \
  do {                                                                   \
    if (*nvals == cap) {                                                 \
      cap = cap ? cap * 2 : 4;                                           \
      *vals = kl_realloc(*vals, cap * sizeof **vals);                    \
    }                                                                    \
    (*vals)[(*nvals)++] = kl_strndup((str), (len));                      \
  } while (0)
  tok t = p_next(p, true);
  if (t.t != T_OPEN)
    return kl_sprintf("found '%.*s' expected: '('", (int)t.n, t.lit);
  t = p_peek(p, true);
  if (t.t == T_CLOSE) {
    p_next(p, true);
    ADDV("", 0);
    return NULL;
  }
  if (t.t != T_ID && t.t != T_COMMA)
    return found_err(t, "',', ')' or identifier");
  for (;;) {
    t = p_next(p, true);
    if (t.t == T_ID) {
      ADDV(t.lit, t.n);
      tok t2 = p_peek(p, true);
      if (t2.t == T_COMMA) continue;
      if (t2.t == T_CLOSE) break;
      return found_err(t2, "',' or ')'");
    } else if (t.t == T_COMMA) {
      if (*nvals == 0) ADDV("", 0);
      tok t2 = p_peek(p, true);
      if (t2.t == T_CLOSE) {
        ADDV("", 0);
        break;
      }
      if (t2.t == T_COMMA) {
        p_next(p, true);
        ADDV("", 0);
      }
    } else {
      return found_err(t, "',', or identifier");
    }
  }
  t = p_next(p, true);
  if (t.t != T_CLOSE) return found_err(t, "')'");
#undef ADDV
  return NULL;
}

static char *parse_requirement(parser *p, req *r) {
  kl_sel_op op = KL_SEL_EQ;
  bool unary = false;
  tok t = p_next(p, true);
  if (t.t == T_NOTEXIST) {
    op = KL_SEL_NOTEXISTS;
    unary = true;
    t = p_next(p, true);
  }
  if (t.t != T_ID) return found_err(t, "identifier");
  char *key = kl_strndup(t.lit, t.n);
  char *e = label_key_error(key);
  if (e) {
    free(key);
    return e;
  }
  tok la = p_peek(p, true);
  /* "!a" takes no operator: in "!a=b" the '=' is then unexpected */
  if (unary || la.t == T_END || la.t == T_COMMA) {
    if (!unary) op = KL_SEL_EXISTS;
    return req_make(r, key, op, NULL, 0);
  }
  t = p_next(p, false);
  switch (t.t) {
  case T_IN: op = KL_SEL_IN; break;
  case T_EQ:
  case T_DEQ: op = KL_SEL_EQ; break;
  case T_GT: op = KL_SEL_GT; break;
  case T_LT: op = KL_SEL_LT; break;
  case T_NOTIN: op = KL_SEL_NOTIN; break;
  case T_NEQ: op = KL_SEL_NEQ; break;
  default:
    free(key);
    return found_err(t, "'=', '!=', '==', 'in', notin'");
  }
  char **vals = NULL;
  size_t nvals = 0;
  if (op == KL_SEL_IN || op == KL_SEL_NOTIN) {
    e = parse_values(p, &vals, &nvals);
  } else {
    tok v = p_peek(p, true);
    if (v.t == T_END || v.t == T_COMMA) {
      vals = kl_malloc(sizeof *vals);
      vals[0] = kl_strdup("");
      nvals = 1;
    } else {
      v = p_next(p, true);
      if (v.t == T_ID) {
        vals = kl_malloc(sizeof *vals);
        vals[0] = kl_strndup(v.lit, v.n);
        nvals = 1;
      } else {
        e = found_err(v, "identifier");
      }
    }
  }
  if (e) {
    for (size_t i = 0; i < nvals; i++) free(vals[i]);
    free(vals);
    free(key);
    return e;
  }
  return req_make(r, key, op, vals, nvals);
}

int kl_selector_parse(const char *s, kl_selector **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  if (!s) s = "";
  lexer lx = {s, 0, strlen(s)};
  parser p = {NULL, 0, 0};
  size_t cap = 0;
  for (;;) {
    if (p.n == cap) {
      cap = cap ? cap * 2 : 16;
      p.toks = kl_realloc(p.toks, cap * sizeof *p.toks);
    }
    p.toks[p.n] = lex(&lx);
    if (p.toks[p.n++].t == T_END) break;
  }
  kl_selector *sel = kl_calloc(1, sizeof *sel);
  size_t rcap = 0;
  char *e = NULL;
  for (;;) {
    tok t = p_peek(&p, true);
    if (t.t == T_END) break;
    if (t.t != T_ID && t.t != T_NOTEXIST) {
      e = found_err(t, "!, identifier, or 'end of string'");
      break;
    }
    req r;
    memset(&r, 0, sizeof r);
    char *re = parse_requirement(&p, &r);
    if (re) {
      e = kl_sprintf("unable to parse requirement: %s", re);
      free(re);
      break;
    }
    sel_push(sel, &rcap, &r);
    t = p_next(&p, true);
    if (t.t == T_END) break;
    if (t.t != T_COMMA) {
      e = found_err(t, "',' or 'end of string'");
      break;
    }
    tok t2 = p_peek(&p, true);
    if (t2.t != T_ID && t2.t != T_NOTEXIST) {
      e = found_err(t2, "identifier after ','");
      break;
    }
  }
  free(p.toks);
  if (e) {
    kl_selector_free(sel);
    if (err)
      *err = e;
    else
      free(e);
    return KL_EINVAL;
  }
  sel_finish(sel);
  *out = sel;
  return 0;
}

int kl_selector_from_cjson(const cJSON *ls, kl_selector **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  kl_selector *sel = kl_calloc(1, sizeof *sel);
  if (!ls || cJSON_IsNull(ls)) {
    sel->nothing = true;
    *out = sel;
    return 0;
  }
  size_t rcap = 0;
  char *e = NULL;
  if (!cJSON_IsObject(ls)) {
    e = kl_strdup("a label selector must be a JSON object");
    goto fail;
  }
  const cJSON *ml = cJSON_GetObjectItemCaseSensitive(ls, "matchLabels");
  if (ml && !cJSON_IsNull(ml)) {
    if (!cJSON_IsObject(ml)) {
      e = kl_strdup("matchLabels must be an object of strings");
      goto fail;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, ml) {
      if (!cJSON_IsString(it)) {
        e = kl_sprintf("matchLabels[%s] must be a string", it->string);
        goto fail;
      }
      char **v = kl_malloc(sizeof *v);
      v[0] = kl_strdup(it->valuestring);
      req r;
      if ((e = req_make(&r, kl_strdup(it->string), KL_SEL_EQ, v, 1)))
        goto fail;
      sel_push(sel, &rcap, &r);
    }
  }
  const cJSON *me = cJSON_GetObjectItemCaseSensitive(ls, "matchExpressions");
  if (me && !cJSON_IsNull(me)) {
    if (!cJSON_IsArray(me)) {
      e = kl_strdup("matchExpressions must be an array");
      goto fail;
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, me) {
      const cJSON *k = cJSON_GetObjectItemCaseSensitive(x, "key");
      const cJSON *o = cJSON_GetObjectItemCaseSensitive(x, "operator");
      const cJSON *vs = cJSON_GetObjectItemCaseSensitive(x, "values");
      if (!cJSON_IsString(k) || !cJSON_IsString(o)) {
        e = kl_strdup("matchExpressions items need a string key and operator");
        goto fail;
      }
      kl_sel_op op;
      const char *os = o->valuestring;
      if (!strcmp(os, "In"))
        op = KL_SEL_IN;
      else if (!strcmp(os, "NotIn"))
        op = KL_SEL_NOTIN;
      else if (!strcmp(os, "Exists"))
        op = KL_SEL_EXISTS;
      else if (!strcmp(os, "DoesNotExist"))
        op = KL_SEL_NOTEXISTS;
      else {
        e = kl_sprintf("\"%s\" is not a valid pod selector operator", os);
        goto fail;
      }
      size_t nv = 0;
      char **v = NULL;
      if (vs && !cJSON_IsNull(vs)) {
        if (!cJSON_IsArray(vs)) {
          e = kl_strdup("matchExpressions values must be an array of strings");
          goto fail;
        }
        int cnt = cJSON_GetArraySize(vs);
        v = kl_calloc((size_t)cnt + 1, sizeof *v);
        const cJSON *s;
        cJSON_ArrayForEach(s, vs) {
          if (!cJSON_IsString(s)) {
            for (size_t i = 0; i < nv; i++) free(v[i]);
            free(v);
            e = kl_strdup("matchExpressions values must be strings");
            goto fail;
          }
          v[nv++] = kl_strdup(s->valuestring);
        }
      }
      req r;
      if ((e = req_make(&r, kl_strdup(k->valuestring), op, v, nv))) goto fail;
      sel_push(sel, &rcap, &r);
    }
  }
  sel_finish(sel);
  *out = sel;
  return 0;
fail:
  kl_selector_free(sel);
  if (err)
    *err = e;
  else
    free(e);
  return KL_EINVAL;
}

int kl_selector_from_json(kl_span js, kl_selector **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  cJSON *t = cJSON_ParseWithLength(js.p ? js.p : "", js.n);
  if (!t) {
    if (err) *err = kl_strdup("label selector: malformed JSON");
    return KL_EJSON;
  }
  int rc = kl_selector_from_cjson(t, out, err);
  cJSON_Delete(t);
  return rc;
}

bool kl_selector_empty(const kl_selector *sel) {
  return !sel || (!sel->nothing && sel->n == 0);
}

bool kl_selector_matches_nothing(const kl_selector *sel) {
  return sel && sel->nothing;
}

size_t kl_selector_count(const kl_selector *sel) { return sel ? sel->n : 0; }

void kl_selector_requirement(const kl_selector *sel, size_t i,
                             const char **key, kl_sel_op *op,
                             const char *const **values, size_t *nvalues) {
  const req *r = &sel->reqs[i];
  if (key) *key = r->key;
  if (op) *op = r->op;
  if (values) *values = (const char *const *)r->vals;
  if (nvalues) *nvalues = r->nvals;
}

/* A label value found in either representation. */
typedef struct lval {
  bool found;
  const char *cs; /* cJSON string */
  kl_span sp;     /* JSON string span */
} lval;

static bool lval_eq(const lval *v, const char *s) {
  return v->cs ? strcmp(v->cs, s) == 0 : kl_json_streq(v->sp, s);
}

static bool lval_int(const lval *v, long long *out) {
  const char *p, *e;
  if (v->cs) {
    p = v->cs;
    e = p + strlen(p);
  } else {
    if (v->sp.n < 2) return false;
    p = v->sp.p + 1;
    e = v->sp.p + v->sp.n - 1;
  }
  char tmp[32];
  size_t n = (size_t)(e - p);
  if (n == 0 || n >= sizeof tmp) return false;
  memcpy(tmp, p, n);
  tmp[n] = '\0';
  char *end;
  errno = 0;
  long long x = strtoll(tmp, &end, 10);
  if (errno || *end) return false;
  *out = x;
  return true;
}

static bool req_matches(const req *r, const lval *v) {
  switch (r->op) {
  case KL_SEL_EXISTS: return v->found;
  case KL_SEL_NOTEXISTS: return !v->found;
  case KL_SEL_EQ:
  case KL_SEL_IN:
    if (!v->found) return false;
    for (size_t i = 0; i < r->nvals; i++)
      if (lval_eq(v, r->vals[i])) return true;
    return false;
  case KL_SEL_NEQ:
  case KL_SEL_NOTIN:
    if (!v->found) return true;
    for (size_t i = 0; i < r->nvals; i++)
      if (lval_eq(v, r->vals[i])) return false;
    return true;
  case KL_SEL_GT:
  case KL_SEL_LT: {
    long long x;
    if (!v->found || !lval_int(v, &x)) return false;
    return r->op == KL_SEL_GT ? x > r->num : x < r->num;
  }
  }
  return false;
}

bool kl_selector_matches_labels(const kl_selector *sel, kl_span labels) {
  if (!sel) return true;
  if (sel->nothing) return false;
  bool have = labels.p && kl_json_type(labels) == 'o';
  for (size_t i = 0; i < sel->n; i++) {
    const req *r = &sel->reqs[i];
    lval v = {false, NULL, {NULL, 0}};
    if (have) {
      kl_json_iter it;
      kl_json_iter_init(&it, labels);
      kl_span k, val;
      while (kl_json_next(&it, &k, &val)) {
        if (kl_json_type(val) == 's' && kl_json_streq(k, r->key)) {
          v.found = true;
          v.sp = val;
          break;
        }
      }
    }
    if (!req_matches(r, &v)) return false;
  }
  return true;
}

bool kl_selector_matches_json(const kl_selector *sel, kl_span obj) {
  if (!sel) return true;
  kl_span labels = {NULL, 0};
  if (!kl_json_get(obj, "metadata.labels", &labels)) labels.p = NULL;
  return kl_selector_matches_labels(sel, labels);
}

bool kl_selector_matches_obj(const kl_selector *sel, const kl_obj *obj) {
  if (!sel) return true;
  return kl_selector_matches_json(sel, kl_obj_span(obj));
}

bool kl_selector_matches_cjson(const kl_selector *sel, const cJSON *obj) {
  if (!sel) return true;
  if (sel->nothing) return false;
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
  for (size_t i = 0; i < sel->n; i++) {
    const req *r = &sel->reqs[i];
    const cJSON *l = cJSON_IsObject(labels)
                         ? cJSON_GetObjectItemCaseSensitive(labels, r->key)
                         : NULL;
    lval v = {false, NULL, {NULL, 0}};
    if (cJSON_IsString(l)) {
      v.found = true;
      v.cs = l->valuestring;
    }
    if (!req_matches(r, &v)) return false;
  }
  return true;
}

char *kl_selector_string(const kl_selector *sel) {
  if (!sel) return kl_strdup("");
  if (sel->nothing) return kl_strdup("<none>");
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "");
  for (size_t i = 0; i < sel->n; i++) {
    const req *r = &sel->reqs[i];
    if (i) kl_buf_addc(&b, ',');
    if (r->op == KL_SEL_NOTEXISTS) kl_buf_addc(&b, '!');
    kl_buf_adds(&b, r->key);
    switch (r->op) {
    case KL_SEL_EXISTS:
    case KL_SEL_NOTEXISTS: break;
    case KL_SEL_EQ: kl_buf_addf(&b, "=%s", r->vals[0]); break;
    case KL_SEL_NEQ: kl_buf_addf(&b, "!=%s", r->vals[0]); break;
    case KL_SEL_GT: kl_buf_addf(&b, ">%s", r->vals[0]); break;
    case KL_SEL_LT: kl_buf_addf(&b, "<%s", r->vals[0]); break;
    case KL_SEL_IN:
    case KL_SEL_NOTIN:
      kl_buf_adds(&b, r->op == KL_SEL_IN ? " in (" : " notin (");
      for (size_t j = 0; j < r->nvals; j++) {
        if (j) kl_buf_addc(&b, ',');
        kl_buf_adds(&b, r->vals[j]);
      }
      kl_buf_addc(&b, ')');
      break;
    }
  }
  return kl_buf_detach(&b, NULL);
}

/* ---- field selectors ------------------------------------------------- */

#define FS_MAX_SEGS 32

typedef struct fterm {
  char *field;
  char *value;
  bool neg;
  char *segbuf;           /* field with '.' replaced by NUL */
  const char *segs[FS_MAX_SEGS];
  int nsegs;
} fterm;

struct kl_fieldsel {
  fterm *t;
  size_t n;
};

void kl_fieldsel_free(kl_fieldsel *fs) {
  if (!fs) return;
  for (size_t i = 0; i < fs->n; i++) {
    free(fs->t[i].field);
    free(fs->t[i].value);
    free(fs->t[i].segbuf);
  }
  free(fs->t);
  free(fs);
}

static int cmp_fterm(const void *a, const void *b) {
  const fterm *x = a, *y = b;
  int c = strcmp(x->field, y->field);
  if (c) return c;
  if (x->neg != y->neg) return x->neg ? 1 : -1;
  return strcmp(x->value, y->value);
}

/* fields.UnescapeValue: returns NULL or a NEW error. */
static char *unescape_value(const char *s, size_t n, char **out) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "");
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '\\') {
      if (i + 1 >= n || (s[i + 1] != '\\' && s[i + 1] != ',' &&
                         s[i + 1] != '=')) {
        kl_buf_free(&b);
        return kl_sprintf("invalid field selector: invalid escape sequence: "
                          "\\%.*s", i + 1 < n ? 1 : 0, s + i + 1);
      }
      kl_buf_addc(&b, s[++i]);
    } else if (c == ',' || c == '=') {
      kl_buf_free(&b);
      return kl_sprintf("invalid field selector: unescaped character in "
                        "value: %c", c);
    } else {
      kl_buf_addc(&b, c);
    }
  }
  *out = kl_buf_detach(&b, NULL);
  return NULL;
}

int kl_fieldsel_parse(const char *s, kl_fieldsel **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  if (!s) s = "";
  kl_fieldsel *fs = kl_calloc(1, sizeof *fs);
  size_t cap = 0;
  char *e = NULL;
  size_t len = strlen(s), st = 0, i;
  while (st <= len) {
    /* splitTerms: up to the next comma not escaped by a backslash */
    i = st;
    while (i < len && s[i] != ',') i += (s[i] == '\\' && i + 1 < len) ? 2 : 1;
    const char *part = s + st;
    size_t pn = i - st;
    st = i + 1;
    if (pn == 0) continue;
    /* splitTerm: the first position where "!=", "==" or "=" starts */
    size_t k = 0, oplen = 0;
    bool neg = false;
    for (; k < pn; k++) {
      if (k + 1 < pn && part[k] == '!' && part[k + 1] == '=') {
        neg = true;
        oplen = 2;
        break;
      }
      if (k + 1 < pn && part[k] == '=' && part[k + 1] == '=') {
        oplen = 2;
        break;
      }
      if (part[k] == '=') {
        oplen = 1;
        break;
      }
    }
    if (!oplen) {
      e = kl_sprintf("invalid selector: '%s'; can't understand '%.*s'", s,
                     (int)pn, part);
      goto fail;
    }
    char *val = NULL;
    if ((e = unescape_value(part + k + oplen, pn - k - oplen, &val)))
      goto fail;
    if (fs->n == cap) {
      cap = cap ? cap * 2 : 4;
      fs->t = kl_realloc(fs->t, cap * sizeof *fs->t);
    }
    fterm *t = &fs->t[fs->n++];
    memset(t, 0, sizeof *t);
    t->field = kl_strndup(part, k);
    t->value = val;
    t->neg = neg;
    t->segbuf = kl_strndup(part, k);
    char *q = t->segbuf;
    for (;;) {
      if (t->nsegs == FS_MAX_SEGS) {
        e = kl_sprintf("invalid selector: '%s': field path too deep", s);
        goto fail;
      }
      t->segs[t->nsegs++] = q;
      char *dot = strchr(q, '.');
      if (!dot) break;
      *dot = '\0';
      q = dot + 1;
    }
  }
  if (fs->n > 1) qsort(fs->t, fs->n, sizeof *fs->t, cmp_fterm);
  *out = fs;
  return 0;
fail:
  kl_fieldsel_free(fs);
  if (err)
    *err = e;
  else
    free(e);
  return KL_EINVAL;
}

bool kl_fieldsel_empty(const kl_fieldsel *fs) { return !fs || fs->n == 0; }
size_t kl_fieldsel_count(const kl_fieldsel *fs) { return fs ? fs->n : 0; }
const char *kl_fieldsel_field(const kl_fieldsel *fs, size_t i) {
  return fs->t[i].field;
}
const char *kl_fieldsel_value(const kl_fieldsel *fs, size_t i) {
  return fs->t[i].value;
}
bool kl_fieldsel_negated(const kl_fieldsel *fs, size_t i) {
  return fs->t[i].neg;
}

/* Equality of a field (span) with a selector value. */
static bool span_field_eq(bool found, kl_span v, const char *want) {
  if (!found) return want[0] == '\0';
  switch (kl_json_type(v)) {
  case 's': return kl_json_streq(v, want);
  case 'z': return want[0] == '\0';
  case 'o':
  case 'a':
  case 0: return false;
  default: return v.n == strlen(want) && memcmp(v.p, want, v.n) == 0;
  }
}

bool kl_fieldsel_matches_json(const kl_fieldsel *fs, kl_span obj) {
  if (!fs) return true;
  for (size_t i = 0; i < fs->n; i++) {
    const fterm *t = &fs->t[i];
    kl_span v = {NULL, 0};
    bool found = kl_json_getv(obj, t->segs, t->nsegs, &v);
    if (span_field_eq(found, v, t->value) == t->neg) return false;
  }
  return true;
}

bool kl_fieldsel_matches_obj(const kl_fieldsel *fs, const kl_obj *obj) {
  if (!fs) return true;
  return kl_fieldsel_matches_json(fs, kl_obj_span(obj));
}

static bool cjson_field_eq(const cJSON *v, const char *want) {
  if (!v || cJSON_IsNull(v)) return want[0] == '\0';
  if (cJSON_IsString(v)) return strcmp(v->valuestring, want) == 0;
  if (cJSON_IsTrue(v)) return strcmp(want, "true") == 0;
  if (cJSON_IsFalse(v)) return strcmp(want, "false") == 0;
  if (cJSON_IsNumber(v)) {
    char tmp[64];
    double d = v->valuedouble;
    /* range first: casting an out-of-range double (1e300, inf) is UB */
    if (d < 9.2e18 && d > -9.2e18 && d == (double)(long long)d)
      snprintf(tmp, sizeof tmp, "%lld", (long long)d);
    else
      snprintf(tmp, sizeof tmp, "%.17g", d);
    return strcmp(tmp, want) == 0;
  }
  return false;
}

bool kl_fieldsel_matches_cjson(const kl_fieldsel *fs, const cJSON *obj) {
  if (!fs) return true;
  for (size_t i = 0; i < fs->n; i++) {
    const fterm *t = &fs->t[i];
    const cJSON *cur = obj;
    for (int s = 0; s < t->nsegs && cur; s++)
      cur = cJSON_IsObject(cur)
                ? cJSON_GetObjectItemCaseSensitive(cur, t->segs[s])
                : NULL;
    if (cjson_field_eq(cur, t->value) == t->neg) return false;
  }
  return true;
}

char *kl_fieldsel_string(const kl_fieldsel *fs) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "");
  for (size_t i = 0; fs && i < fs->n; i++) {
    if (i) kl_buf_addc(&b, ',');
    kl_buf_adds(&b, fs->t[i].field);
    kl_buf_adds(&b, fs->t[i].neg ? "!=" : "=");
    for (const char *p = fs->t[i].value; *p; p++) {
      if (*p == '\\' || *p == ',' || *p == '=') kl_buf_addc(&b, '\\');
      kl_buf_addc(&b, *p);
    }
  }
  return kl_buf_detach(&b, NULL);
}
