/* manifest.c: YAML/JSON manifests into cJSON, through libyaml's event
 * parser; see manifest.h. Scalars are typed as yaml.v2 (which
 * sigs.k8s.io/yaml uses) resolves them. */
#include "manifest.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "json.h"

#define MAX_ALIASES 10000
#define MAX_ALIAS_NODES 1000000
#define MAX_DEPTH 200

typedef struct frame {
  cJSON *node;      /* object or array being filled */
  char *key;        /* pending key of a mapping (NULL: expecting a key) */
  bool merge_key;   /* the pending key is "<<" */
  cJSON *merges;    /* values of "<<" keys, applied at the end */
  char *anchor;     /* anchor of this node, registered when it ends */
  size_t line;
} frame;

typedef struct anchor {
  char *name;
  cJSON *node; /* a private copy */
} anchor;

typedef struct builder {
  const char *name;
  int doc;
  frame stack[MAX_DEPTH];
  int depth;
  cJSON *root;
  bool have_root;
  anchor *anchors;
  size_t nanchors, capanchors;
  size_t aliases, alias_nodes;
  char *err;
} builder;

static void b_error(builder *b, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void b_error(builder *b, size_t line, const char *fmt, ...) {
  if (b->err) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  b->err = kl_sprintf("%s: document %d: line %zu: %s", b->name, b->doc, line,
                      msg);
}

static void anchors_clear(builder *b) {
  for (size_t i = 0; i < b->nanchors; i++) {
    free(b->anchors[i].name);
    cJSON_Delete(b->anchors[i].node);
  }
  b->nanchors = 0;
}

static void anchor_set(builder *b, const char *name, const cJSON *node) {
  for (size_t i = 0; i < b->nanchors; i++) {
    if (!strcmp(b->anchors[i].name, name)) {
      cJSON_Delete(b->anchors[i].node);
      b->anchors[i].node = cJSON_Duplicate(node, 1);
      return;
    }
  }
  if (b->nanchors == b->capanchors) {
    b->capanchors = b->capanchors ? b->capanchors * 2 : 8;
    b->anchors = kl_realloc(b->anchors, b->capanchors * sizeof *b->anchors);
  }
  b->anchors[b->nanchors].name = kl_strdup(name);
  b->anchors[b->nanchors].node = cJSON_Duplicate(node, 1);
  b->nanchors++;
}

static size_t count_nodes(const cJSON *n) {
  size_t c = 1;
  for (const cJSON *x = n->child; x; x = x->next) c += count_nodes(x);
  return c;
}

/* Attaches a finished value to the current container or as the root. */
static void b_put(builder *b, cJSON *v, size_t line) {
  if (b->err) {
    cJSON_Delete(v);
    return;
  }
  if (b->depth == 0) {
    b->root = v;
    b->have_root = true;
    return;
  }
  frame *f = &b->stack[b->depth - 1];
  if (cJSON_IsArray(f->node)) {
    cJSON_AddItemToArray(f->node, v);
    return;
  }
  if (!f->key) {
    /* v is a key: only scalars can be keys */
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
      b_error(b, line, "a mapping key must be a scalar");
      cJSON_Delete(v);
      return;
    }
    if (cJSON_IsString(v)) {
      f->key = kl_strdup(v->valuestring);
    } else {
      char *s = cJSON_PrintUnformatted(v);
      f->key = kl_strdup(s ? s : "null");
      free(s);
    }
    cJSON_Delete(v);
    return;
  }
  if (f->merge_key) {
    if (!f->merges) f->merges = cJSON_CreateArray();
    cJSON_AddItemToArray(f->merges, v);
  } else if (cJSON_GetObjectItemCaseSensitive(f->node, f->key)) {
    b_error(b, line, "key \"%s\" already set in map", f->key);
    cJSON_Delete(v);
  } else {
    cJSON_AddItemToObject(f->node, f->key, v);
  }
  free(f->key);
  f->key = NULL;
  f->merge_key = false;
}

static bool streq_any(const char *s, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(s, *list)) return true;
  return false;
}

/* Types a plain scalar as yaml.v2 resolves it. Returns NULL (with the
 * builder's error set) for values JSON cannot hold. */
static cJSON *resolve_plain(builder *b, const char *s, size_t line) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
  static const char *const trues[] = {"y", "Y", "yes", "Yes", "YES",
                                      "true", "True", "TRUE", "on", "On",
                                      "ON", NULL};
  static const char *const falses[] = {"n", "N", "no", "No", "NO", "false",
                                       "False", "FALSE", "off", "Off", "OFF",
                                       NULL};
  static const char *const nonfinite[] = {".nan", ".NaN", ".NAN", ".inf",
                                          ".Inf", ".INF", "+.inf", "+.Inf",
                                          "+.INF", "-.inf", "-.Inf", "-.INF",
                                          NULL};
  if (streq_any(s, nulls)) return cJSON_CreateNull();
  if (streq_any(s, trues)) return cJSON_CreateTrue();
  if (streq_any(s, falses)) return cJSON_CreateFalse();
  if (streq_any(s, nonfinite)) {
    b_error(b, line, "%s cannot be represented in JSON", s);
    return NULL;
  }
  /* integers: Go's ParseInt(s, 0, 64) after dropping '_' */
  char tmp[80];
  size_t n = 0;
  for (const char *p = s; *p && n + 1 < sizeof tmp; p++)
    if (*p != '_') tmp[n++] = *p;
  tmp[n] = '\0';
  if (n > 0 && strlen(s) < sizeof tmp) {
    const char *p = tmp;
    bool neg = false;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) base = 16, p += 2;
    else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) base = 8, p += 2;
    else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B')) base = 2, p += 2;
    else if (p[0] == '0' && p[1]) base = 8, p += 1;
    bool ok = *p != '\0';
    unsigned long long v = 0;
    for (const char *q = p; ok && *q; q++) {
      int d;
      if (*q >= '0' && *q <= '9') d = *q - '0';
      else if (*q >= 'a' && *q <= 'f') d = *q - 'a' + 10;
      else if (*q >= 'A' && *q <= 'F') d = *q - 'A' + 10;
      else d = 99;
      if (d >= base || v > (~0ULL - (unsigned)d) / (unsigned)base) ok = false;
      else v = v * (unsigned)base + (unsigned)d;
    }
    if (ok) return cJSON_CreateNumber(neg ? -(double)v : (double)v);
    /* floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    p = s;
    if (*p == '+' || *p == '-') p++;
    const char *q = p;
    size_t digits = 0;
    while (*q >= '0' && *q <= '9') q++, digits++;
    if (*q == '.') {
      q++;
      while (*q >= '0' && *q <= '9') q++, digits++;
    }
    bool fl = digits > 0 && !(p[0] == '.' && q == p + 1);
    if (fl && (*q == 'e' || *q == 'E')) {
      q++;
      if (*q == '+' || *q == '-') q++;
      if (!(*q >= '0' && *q <= '9')) fl = false;
      while (*q >= '0' && *q <= '9') q++;
    }
    if (fl && *q == '\0') {
      double d = strtod(s, NULL);
      if (isfinite(d)) return cJSON_CreateNumber(d);
    }
  }
  return cJSON_CreateString(s);
}

static cJSON *scalar_value(builder *b, const yaml_event_t *ev) {
  const char *s = (const char *)ev->data.scalar.value;
  size_t line = ev->start_mark.line + 1;
  const char *tag = (const char *)ev->data.scalar.tag;
  if (strlen(s) != ev->data.scalar.length) {
    b_error(b, line, "a scalar contains a NUL character");
    return NULL;
  }
  if (tag && strcmp(tag, "!") != 0) {
    if (!strcmp(tag, YAML_STR_TAG)) return cJSON_CreateString(s);
    if (!strcmp(tag, YAML_NULL_TAG)) return cJSON_CreateNull();
    if (!strcmp(tag, YAML_BOOL_TAG) || !strcmp(tag, YAML_INT_TAG) ||
        !strcmp(tag, YAML_FLOAT_TAG)) {
      cJSON *v = resolve_plain(b, s, line);
      if (v && cJSON_IsString(v)) {
        b_error(b, line, "cannot decode \"%s\" as %s", s, tag);
        cJSON_Delete(v);
        return NULL;
      }
      return v;
    }
    if (!strcmp(tag, "tag:yaml.org,2002:binary")) return cJSON_CreateString(s);
  }
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
      (tag && !strcmp(tag, "!")))
    return cJSON_CreateString(s);
  if (!strcmp(s, "<<")) return cJSON_CreateString(s);
  return resolve_plain(b, s, line);
}

static void b_push(builder *b, cJSON *node, const yaml_char_t *anchor,
                   size_t line) {
  if (b->depth >= MAX_DEPTH) {
    b_error(b, line, "nesting deeper than %d levels", MAX_DEPTH);
    cJSON_Delete(node);
    return;
  }
  frame *f = &b->stack[b->depth++];
  memset(f, 0, sizeof *f);
  f->node = node;
  f->anchor = anchor ? kl_strdup((const char *)anchor) : NULL;
  f->line = line;
}

static void b_pop(builder *b, size_t line) {
  frame *f = &b->stack[--b->depth];
  if (f->merges) {
    /* "<<": keys of the merged maps that the map does not set itself;
     * earlier maps in a "<<" list win over later ones */
    cJSON *src;
    cJSON_ArrayForEach(src, f->merges) {
      cJSON *list = cJSON_IsArray(src) ? src : NULL;
      cJSON *one = list ? list->child : src;
      for (; one; one = list ? one->next : NULL) {
        if (!cJSON_IsObject(one)) {
          b_error(b, line, "map merge requires map or sequence of maps as "
                           "the value");
          break;
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, one) {
          if (!cJSON_GetObjectItemCaseSensitive(f->node, m->string))
            cJSON_AddItemToObject(f->node, m->string,
                                  cJSON_Duplicate(m, 1));
        }
        if (!list) break;
      }
    }
    cJSON_Delete(f->merges);
  }
  free(f->key);
  if (f->anchor && !b->err) anchor_set(b, f->anchor, f->node);
  free(f->anchor);
  b_put(b, f->node, f->line);
}

static void b_reset(builder *b) {
  while (b->depth > 0) {
    frame *f = &b->stack[--b->depth];
    cJSON_Delete(f->node);
    cJSON_Delete(f->merges);
    free(f->key);
    free(f->anchor);
  }
  cJSON_Delete(b->root);
  b->root = NULL;
  b->have_root = false;
}

static void expand_list(cJSON *out, cJSON *doc) {
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(doc, "kind");
  cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items");
  size_t kl = cJSON_IsString(kind) ? strlen(kind->valuestring) : 0;
  if (kl >= 4 && !strcmp(kind->valuestring + kl - 4, "List") &&
      cJSON_IsArray(items)) {
    while (cJSON_GetArraySize(items) > 0)
      cJSON_AddItemToArray(out, cJSON_DetachItemFromArray(items, 0));
    cJSON_Delete(doc);
    return;
  }
  cJSON_AddItemToArray(out, doc);
}

static bool looks_like_json(const char *text, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = text[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{' || c == '[';
  }
  return false;
}

int kl_manifest_parse(const char *text, size_t n, const char *name,
                      int flags, cJSON **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  if (!name) name = "<input>";
  if (!text) text = "";
  cJSON *docs = cJSON_CreateArray();
  /* JSON fast path (also avoids YAML's rules on tabs) */
  if (looks_like_json(text, n) && kl_json_validate(text, n) == 0) {
    cJSON *v = cJSON_ParseWithLength(text, n);
    if (cJSON_IsObject(v)) {
      if (flags & KL_MANIFEST_EXPAND_LISTS)
        expand_list(docs, v);
      else
        cJSON_AddItemToArray(docs, v);
      *out = docs;
      return 0;
    }
    cJSON_Delete(v);
  }
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    fprintf(stderr, "klua: out of memory (libyaml)\n");
    abort();
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, n);
  builder *b = kl_calloc(1, sizeof *b);
  b->name = name;
  bool done = false;
  while (!done && !b->err) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      size_t line = parser.problem_mark.line + 1;
      if (parser.context)
        b_error(b, line, "%s %s", parser.context,
                parser.problem ? parser.problem : "syntax error");
      else
        b_error(b, line, "%s", parser.problem ? parser.problem
                                              : "syntax error");
      break;
    }
    size_t line = ev.start_mark.line + 1;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT: done = true; break;
    case YAML_DOCUMENT_START_EVENT:
      b->doc++;
      b_reset(b);
      anchors_clear(b);
      break;
    case YAML_DOCUMENT_END_EVENT:
      if (b->have_root && b->root && !cJSON_IsNull(b->root)) {
        if (!cJSON_IsObject(b->root)) {
          b_error(b, line, "a document must be a mapping (an object), not %s",
                  cJSON_IsArray(b->root) ? "a sequence" : "a scalar");
        } else {
          cJSON *r = b->root;
          b->root = NULL;
          if (flags & KL_MANIFEST_EXPAND_LISTS)
            expand_list(docs, r);
          else
            cJSON_AddItemToArray(docs, r);
        }
      }
      b_reset(b);
      break;
    case YAML_MAPPING_START_EVENT:
      b_push(b, cJSON_CreateObject(), ev.data.mapping_start.anchor, line);
      break;
    case YAML_SEQUENCE_START_EVENT:
      b_push(b, cJSON_CreateArray(), ev.data.sequence_start.anchor, line);
      break;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
      if (b->depth > 0) b_pop(b, line);
      break;
    case YAML_SCALAR_EVENT: {
      frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
      bool is_key = f && cJSON_IsObject(f->node) && !f->key;
      cJSON *v;
      if (is_key && ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
          !strcmp((const char *)ev.data.scalar.value, "<<")) {
        f->key = kl_strdup("<<");
        f->merge_key = true;
        break;
      }
      /* keys stay text as written ("1: x" has the key "1") */
      if (is_key)
        v = cJSON_CreateString((const char *)ev.data.scalar.value);
      else
        v = scalar_value(b, &ev);
      if (!v) break;
      if (ev.data.scalar.anchor)
        anchor_set(b, (const char *)ev.data.scalar.anchor, v);
      b_put(b, v, line);
      break;
    }
    case YAML_ALIAS_EVENT: {
      const char *an = (const char *)ev.data.alias.anchor;
      cJSON *src = NULL;
      for (size_t i = 0; i < b->nanchors; i++)
        if (!strcmp(b->anchors[i].name, an)) src = b->anchors[i].node;
      if (!src) {
        b_error(b, line, "unknown anchor '%s' referenced", an);
        break;
      }
      b->alias_nodes += count_nodes(src);
      if (++b->aliases > MAX_ALIASES || b->alias_nodes > MAX_ALIAS_NODES) {
        b_error(b, line, "too many alias expansions (document is too large "
                         "once aliases are expanded)");
        break;
      }
      b_put(b, cJSON_Duplicate(src, 1), line);
      break;
    }
    default: break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  b_reset(b);
  anchors_clear(b);
  free(b->anchors);
  char *e = b->err;
  free(b);
  if (e) {
    cJSON_Delete(docs);
    if (err)
      *err = e;
    else
      free(e);
    return KL_EINVAL;
  }
  *out = docs;
  return 0;
}

int kl_manifest_parse_one(const char *text, size_t n, cJSON **out,
                          char **err) {
  cJSON *docs = NULL;
  *out = NULL;
  int rc = kl_manifest_parse(text, n, "body", 0, &docs, err);
  if (rc) return rc;
  int cnt = cJSON_GetArraySize(docs);
  if (cnt != 1) {
    cJSON_Delete(docs);
    if (err)
      *err = kl_sprintf("body: expected exactly one YAML or JSON object, "
                        "found %d",
                        cnt);
    return KL_EINVAL;
  }
  *out = cJSON_DetachItemFromArray(docs, 0);
  cJSON_Delete(docs);
  return 0;
}

static int read_file(const char *path, char **data, size_t *len,
                     char **err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (err) *err = kl_sprintf("%s: %s", path, strerror(errno));
    return KL_EIO;
  }
  kl_buf b = KL_BUF_INIT;
  char chunk[65536];
  size_t r;
  while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) kl_buf_add(&b, chunk, r);
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    kl_buf_free(&b);
    if (err) *err = kl_sprintf("%s: read error", path);
    return KL_EIO;
  }
  *data = kl_buf_detach(&b, len);
  return 0;
}

static int load_file(const char *path, int flags, cJSON *all, char **err) {
  char *data;
  size_t len;
  int rc = read_file(path, &data, &len, err);
  if (rc) return rc;
  cJSON *docs = NULL;
  rc = kl_manifest_parse(data, len, path, flags, &docs, err);
  free(data);
  if (rc) return rc;
  while (cJSON_GetArraySize(docs) > 0)
    cJSON_AddItemToArray(all, cJSON_DetachItemFromArray(docs, 0));
  cJSON_Delete(docs);
  return 0;
}

static bool has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int kl_manifest_load(const char *path, int flags, cJSON **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0) {
    if (err) *err = kl_sprintf("%s: %s", path, strerror(errno));
    return KL_EIO;
  }
  cJSON *all = cJSON_CreateArray();
  int rc = 0;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d) {
      if (err) *err = kl_sprintf("%s: %s", path, strerror(errno));
      cJSON_Delete(all);
      return KL_EIO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      if (!has_suffix(de->d_name, ".yaml") &&
          !has_suffix(de->d_name, ".yml") && !has_suffix(de->d_name, ".json"))
        continue;
      if (n == cap) {
        cap = cap ? cap * 2 : 16;
        names = kl_realloc(names, cap * sizeof *names);
      }
      names[n++] = kl_strdup(de->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
      if (!rc) {
        char *p = kl_sprintf("%s/%s", path, names[i]);
        struct stat fst;
        if (stat(p, &fst) == 0 && S_ISREG(fst.st_mode))
          rc = load_file(p, flags, all, err);
        free(p);
      }
      free(names[i]);
    }
    free(names);
  } else {
    rc = load_file(path, flags, all, err);
  }
  if (rc) {
    cJSON_Delete(all);
    return rc;
  }
  *out = all;
  return 0;
}

/* ---- emitter --------------------------------------------------------- */

/* Characters YAML cannot hold raw, even inside double quotes: DEL and the
 * C1 controls (not printable), NEL, LS and PS (read as line breaks), BOM,
 * U+FFFE/U+FFFF. Returns the byte length of such a character at p (0 when
 * there is none) and its code point in *cp. */
static size_t yaml_special(const char *s, unsigned *cp) {
  const unsigned char *p = (const unsigned char *)s;
  if (p[0] == 0x7f) return *cp = 0x7f, 1;
  if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) return *cp = p[1], 2;
  if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))
    return *cp = 0x2000u + (p[2] - 0x80u), 3;
  if (p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) return *cp = 0xFEFF, 3;
  if (p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF))
    return *cp = 0xFFC0u + (p[2] - 0x80u), 3;
  return 0;
}

static bool has_yaml_special(const char *s) {
  unsigned cp;
  for (; *s; s++)
    if (yaml_special(s, &cp)) return true;
  return false;
}

/* Double-quotes s as JSON does, with the characters above \u-escaped. */
static void yaml_quote(kl_buf *b, const char *s) {
  kl_buf q = KL_BUF_INIT;
  kl_json_quote(&q, s, strlen(s));
  const char *p = q.data;
  while (*p) {
    unsigned cp;
    size_t n = yaml_special(p, &cp);
    if (n) {
      kl_buf_addf(b, "\\u%04x", cp);
      p += n;
    } else {
      kl_buf_addc(b, *p++);
    }
  }
  kl_buf_free(&q);
}

/* Does a string need quotes to read back as the same string? */
static bool needs_quotes(const char *s) {
  if (!*s || has_yaml_special(s)) return true;
  builder b;
  memset(&b, 0, sizeof b);
  b.name = "";
  cJSON *v = resolve_plain(&b, s, 0);
  bool typed = !v || !cJSON_IsString(v);
  cJSON_Delete(v);
  free(b.err);
  if (typed) return true;
  if (strchr("-?:,[]{}#&*!|>'\"%@` \t", s[0])) return true;
  size_t n = strlen(s);
  if (s[n - 1] == ' ' || s[n - 1] == ':') return true;
  if (strstr(s, ": ") || strstr(s, " #")) return true;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) return true;
  return !strcmp(s, "<<");
}

static void indent(kl_buf *b, int n) {
  for (int i = 0; i < n; i++) kl_buf_addc(b, ' ');
}

static void emit_string(kl_buf *b, const char *s, int ind) {
  if (strchr(s, '\n') && !strchr(s, '\r') && s[0] != ' ' && s[0] != '\t' &&
      !has_yaml_special(s)) {
    size_t n = strlen(s);
    if (n >= 2 && s[n - 1] == '\n' && s[n - 2] == '\n') {
      yaml_quote(b, s); /* trailing blank lines: keep it simple */
      return;
    }
    kl_buf_adds(b, n && s[n - 1] == '\n' ? "|" : "|-");
    const char *p = s;
    while (*p) {
      const char *nl = strchr(p, '\n');
      size_t len = nl ? (size_t)(nl - p) : strlen(p);
      kl_buf_addc(b, '\n');
      if (len) {
        indent(b, ind);
        kl_buf_add(b, p, len);
      }
      if (!nl) break;
      p = nl + 1;
    }
    return;
  }
  if (needs_quotes(s))
    yaml_quote(b, s);
  else
    kl_buf_adds(b, s);
}

static void emit_scalar(kl_buf *b, const cJSON *v, int ind) {
  if (cJSON_IsString(v)) {
    emit_string(b, v->valuestring, ind);
  } else if (cJSON_IsRaw(v)) {
    kl_buf_adds(b, v->valuestring);
  } else {
    char *s = cJSON_PrintUnformatted(v);
    kl_buf_adds(b, s ? s : "null");
    free(s);
  }
}

static void emit_key(kl_buf *b, const char *k) {
  if (needs_quotes(k) || strchr(k, '\n'))
    yaml_quote(b, k);
  else
    kl_buf_adds(b, k);
}

static void emit(kl_buf *b, const cJSON *v, int ind);

static bool is_empty_coll(const cJSON *v) {
  return (cJSON_IsObject(v) || cJSON_IsArray(v)) && !v->child;
}

static void emit_obj_members(kl_buf *b, const cJSON *v, int ind,
                             bool first_inline) {
  bool first = true;
  const cJSON *m;
  cJSON_ArrayForEach(m, v) {
    if (!(first && first_inline)) indent(b, ind);
    first = false;
    /* A simple key may be at most 1024 characters long (YAML 1.1, 7.4.2):
     * a longer one takes the explicit form "? key" NEWLINE ": value". */
    kl_buf key = KL_BUF_INIT;
    emit_key(&key, m->string);
    if (key.len > 1000) {
      kl_buf_adds(b, "? ");
      kl_buf_add(b, key.data, key.len);
      kl_buf_addc(b, '\n');
      indent(b, ind);
    } else {
      kl_buf_add(b, key.data, key.len);
    }
    kl_buf_free(&key);
    kl_buf_addc(b, ':');
    if (cJSON_IsObject(m) && m->child) {
      kl_buf_addc(b, '\n');
      emit_obj_members(b, m, ind + 2, false);
    } else if (cJSON_IsArray(m) && m->child) {
      kl_buf_addc(b, '\n');
      emit(b, m, ind);
    } else {
      kl_buf_addc(b, ' ');
      if (is_empty_coll(m))
        kl_buf_adds(b, cJSON_IsObject(m) ? "{}" : "[]");
      else
        emit_scalar(b, m, ind + 2);
      kl_buf_addc(b, '\n');
    }
  }
}

static void emit(kl_buf *b, const cJSON *v, int ind) {
  if (cJSON_IsObject(v) && v->child) {
    emit_obj_members(b, v, ind, false);
  } else if (cJSON_IsArray(v) && v->child) {
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
      indent(b, ind);
      kl_buf_adds(b, "- ");
      if (cJSON_IsObject(x) && x->child) {
        emit_obj_members(b, x, ind + 2, true);
      } else if (cJSON_IsArray(x) && x->child) {
        kl_buf_addc(b, '\n');
        emit(b, x, ind + 2);
      } else {
        if (is_empty_coll(x))
          kl_buf_adds(b, cJSON_IsObject(x) ? "{}" : "[]");
        else
          emit_scalar(b, x, ind + 2);
        kl_buf_addc(b, '\n');
      }
    }
  } else {
    indent(b, ind);
    if (is_empty_coll(v))
      kl_buf_adds(b, cJSON_IsObject(v) ? "{}" : "[]");
    else
      emit_scalar(b, v, ind + 2);
    kl_buf_addc(b, '\n');
  }
}

char *kl_yaml_emit(const cJSON *v) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "");
  if (v) emit(&b, v, 0);
  return kl_buf_detach(&b, NULL);
}
