/* kubeconfig.c: kubeconfig loading/merging (libyaml), in-cluster config,
 * and the live credential source (token files, exec plugins). */
#include "kubeconfig.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "json.h"

extern char **environ;

#define DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define MAX_FILE_BYTES (16u << 20)
#define TOKEN_RECHECK_S 2.0

/* ---- small helpers ---------------------------------------------------- */

static void wipe_free(char *p, size_t n) {
  if (!p) return;
  volatile char *v = p;
  for (size_t i = 0; i < n; i++) v[i] = 0;
  free(p);
}

static void wipe_str(char *p) { if (p) wipe_free(p, strlen(p)); }

static char *dup_or_null(const char *s) { return s ? kl_strdup(s) : NULL; }

static void json_quote_c(kl_buf *b, const char *s) {
  kl_json_quote(b, s, strlen(s));
}

/* Reads a whole file into a NEW NUL-terminated buffer. Returns 0 or -errno. */
static int read_file(const char *path, char **out, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  kl_buf b = KL_BUF_INIT;
  kl_buf_reserve(&b, 4096);
  for (;;) {
    kl_buf_reserve(&b, 4096);
    ssize_t r = read(fd, b.data + b.len, b.cap - b.len - 1);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = -errno;
      close(fd);
      wipe_free(b.data, b.cap);
      return e;
    }
    if (r == 0) break;
    b.len += (size_t)r;
    b.data[b.len] = '\0';
    if (b.len > MAX_FILE_BYTES) {
      close(fd);
      wipe_free(b.data, b.cap);
      return -EFBIG;
    }
  }
  close(fd);
  *len = b.len;
  *out = kl_buf_detach(&b, NULL);
  return 0;
}

static char *trim_dup(const char *s, size_t n) {
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
               s[n - 1] == '\t'))
    n--;
  while (n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++, n--;
  return kl_strndup(s, n);
}

static char *dir_of(const char *file) {
  const char *slash = strrchr(file, '/');
  if (!slash) return kl_strdup(".");
  if (slash == file) return kl_strdup("/");
  return kl_strndup(file, (size_t)(slash - file));
}

/* Resolves p against dir unless it is absolute or empty. NEW string. */
static char *resolve_path(const char *dir, const char *p) {
  if (!p || !*p) return NULL;
  if (p[0] == '/') return kl_strdup(p);
  while (p[0] == '.' && p[1] == '/') p += 2;
  if (p[0] == '~' && p[1] == '/' && getenv("HOME"))
    return kl_sprintf("%s/%s", getenv("HOME"), p + 2);
  return kl_sprintf("%s/%s", dir, p);
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* Standard base64 (padding optional, whitespace skipped) into a NEW buffer.
 * Returns 0 or KL_EINVAL. */
static int b64_decode(const char *s, char **out, size_t *len) {
  size_t n = strlen(s);
  char *o = kl_malloc(n / 4 * 3 + 4);
  size_t k = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') break;
    int v = b64val(c);
    if (v < 0) {
      wipe_free(o, n / 4 * 3 + 4);
      return KL_EINVAL;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[k++] = (char)((acc >> bits) & 0xff);
    }
  }
  o[k] = '\0';
  *out = o;
  *len = k;
  return 0;
}

static void b64_encode(kl_buf *b, const char *p, size_t n) {
  static const char tbl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned char)p[i] << 16;
    if (i + 1 < n) v |= (unsigned char)p[i + 1] << 8;
    if (i + 2 < n) v |= (unsigned char)p[i + 2];
    kl_buf_addc(b, tbl[(v >> 18) & 63]);
    kl_buf_addc(b, tbl[(v >> 12) & 63]);
    kl_buf_addc(b, i + 1 < n ? tbl[(v >> 6) & 63] : '=');
    kl_buf_addc(b, i + 2 < n ? tbl[v & 63] : '=');
  }
}

static bool yaml_truthy(const char *s) {
  return s && (!strcmp(s, "true") || !strcmp(s, "True") ||
               !strcmp(s, "TRUE") || !strcmp(s, "yes") || !strcmp(s, "on"));
}

/* ---- YAML document access ---------------------------------------------- */

typedef struct kfile {
  char *path, *dir;
  yaml_document_t doc;
  bool loaded;
} kfile;

static yaml_node_t *ynode(kfile *f, int idx) {
  return idx ? yaml_document_get_node(&f->doc, idx) : NULL;
}

static const char *yscalar(yaml_node_t *n) {
  if (!n || n->type != YAML_SCALAR_NODE) return NULL;
  return (const char *)n->data.scalar.value;
}

static yaml_node_t *yget(kfile *f, yaml_node_t *map, const char *key) {
  if (!map || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
       p < map->data.mapping.pairs.top; p++) {
    const char *k = yscalar(ynode(f, p->key));
    if (k && !strcmp(k, key)) return ynode(f, p->value);
  }
  return NULL;
}

static const char *ygets(kfile *f, yaml_node_t *map, const char *key) {
  const char *s = yscalar(yget(f, map, key));
  return s && *s ? s : NULL;
}

/* Parses one file. Missing files: -ENOENT. Returns 0, -errno, or KL_EINVAL
 * with a message for bad YAML / bad structure. */
static int kfile_load(kfile *f, const char *path, char **err) {
  memset(f, 0, sizeof *f);
  char *text = NULL;
  size_t len = 0;
  int rc = read_file(path, &text, &len);
  if (rc < 0) return rc;
  f->path = kl_strdup(path);
  f->dir = dir_of(path);
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &f->doc)) {
    *err = kl_sprintf("kubeconfig %s: invalid YAML at line %zu: %s", path,
                      parser.problem_mark.line + 1,
                      parser.problem ? parser.problem : "parse error");
    yaml_parser_delete(&parser);
    wipe_free(text, len);
    return KL_EINVAL;
  }
  yaml_parser_delete(&parser);
  wipe_free(text, len);
  f->loaded = true;
  yaml_node_t *root = yaml_document_get_root_node(&f->doc);
  if (root && root->type != YAML_MAPPING_NODE &&
      !(root->type == YAML_SCALAR_NODE && !*yscalar(root))) {
    *err = kl_sprintf("kubeconfig %s: top level is not a mapping", path);
    return KL_EINVAL;
  }
  return 0;
}

static void kfile_free(kfile *f) {
  if (f->loaded) yaml_document_delete(&f->doc);
  free(f->path);
  free(f->dir);
}

/* A named entry (cluster/user/context) and the file that defined it. */
typedef struct kentry {
  const char *name;
  kfile *file;
  yaml_node_t *body; /* the "cluster"/"user"/"context" mapping */
} kentry;

typedef struct kentries {
  kentry *v;
  int n;
} kentries;

static kentry *kentries_find(kentries *e, const char *name) {
  for (int i = 0; i < e->n; i++)
    if (!strcmp(e->v[i].name, name)) return &e->v[i];
  return NULL;
}

/* Adds the list `listkey` (e.g. "clusters") of f; first definition wins. */
static int collect(kfile *f, const char *listkey, const char *itemkey,
                   kentries *e, char **err) {
  yaml_node_t *root = yaml_document_get_root_node(&f->doc);
  yaml_node_t *list = yget(f, root, listkey);
  if (!list || (list->type == YAML_SCALAR_NODE && !*yscalar(list))) return 0;
  if (list->type != YAML_SEQUENCE_NODE) {
    *err = kl_sprintf("kubeconfig %s: %s is not a list", f->path, listkey);
    return KL_EINVAL;
  }
  for (yaml_node_item_t *it = list->data.sequence.items.start;
       it < list->data.sequence.items.top; it++) {
    yaml_node_t *item = ynode(f, *it);
    const char *name = yscalar(yget(f, item, "name"));
    if (!name || !*name) {
      *err = kl_sprintf("kubeconfig %s: an entry of %s has no name (line %zu)",
                        f->path, listkey, item->start_mark.line + 1);
      return KL_EINVAL;
    }
    if (kentries_find(e, name)) continue;
    e->v = kl_realloc(e->v, sizeof(kentry) * (size_t)(e->n + 1));
    e->v[e->n++] = (kentry){name, f, yget(f, item, itemkey)};
  }
  return 0;
}

/* Frees an exec plugin's configuration (NULL is fine), its env wiped. */
static void exec_config_free(kl_exec_config *x) {
  if (!x) return;
  free(x->command);
  for (int i = 0; i < x->nargs; i++) free(x->args[i]);
  free(x->args);
  for (int i = 0; i < x->nenv; i++) wipe_str(x->env[i]);
  free(x->env);
  free(x->api_version);
  free(x->install_hint);
  free(x);
}

void kl_kubeconfig_free(kl_kubeconfig *kc) {
  if (!kc) return;
  free(kc->source);
  free(kc->context);
  free(kc->cluster_name);
  free(kc->user_name);
  free(kc->server);
  free(kc->namespace);
  free(kc->ca_data);
  free(kc->ca_file);
  free(kc->tls_server_name);
  free(kc->proxy_url);
  wipe_str(kc->token);
  free(kc->token_file);
  free(kc->cert_data);
  wipe_free(kc->key_data, kc->key_len);
  free(kc->username);
  wipe_str(kc->password);
  exec_config_free(kc->exec);
  free(kc);
}

/* Reads file data either inline (base64 `datakey`) or from `filekey`.
 * what: "certificate-authority" etc. for messages. */
static int load_pem(kfile *f, yaml_node_t *body, const char *datakey,
                    const char *filekey, const char *what, const char *ctx,
                    char **data, size_t *len, char **file_out, char **err) {
  const char *d = ygets(f, body, datakey);
  if (d) {
    if (b64_decode(d, data, len) < 0) {
      *err = kl_sprintf("kubeconfig %s: context \"%s\": %s is not valid "
                        "base64", f->path, ctx, datakey);
      return KL_EINVAL;
    }
    return 0;
  }
  const char *p = ygets(f, body, filekey);
  if (!p) return 0;
  char *path = resolve_path(f->dir, p);
  int rc = read_file(path, data, len);
  if (rc < 0) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\": cannot read %s file "
                      "%s: %s", f->path, ctx, what, path, strerror(-rc));
    free(path);
    return KL_EIO;
  }
  if (file_out) *file_out = path;
  else free(path);
  return 0;
}

static int parse_exec(kfile *f, yaml_node_t *x, const char *ctx,
                      const char *user, kl_exec_config **out, char **err) {
  const char *cmd = ygets(f, x, "command");
  const char *apiv = ygets(f, x, "apiVersion");
  if (!cmd) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\": user \"%s\": exec has "
                      "no command", f->path, ctx, user);
    return KL_EINVAL;
  }
  if (!apiv || (strcmp(apiv, "client.authentication.k8s.io/v1") &&
                strcmp(apiv, "client.authentication.k8s.io/v1beta1"))) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\": user \"%s\": exec "
                      "apiVersion \"%s\" is not supported (use "
                      "client.authentication.k8s.io/v1 or v1beta1)",
                      f->path, ctx, user, apiv ? apiv : "");
    return KL_EINVAL;
  }
  kl_exec_config *e = kl_calloc(1, sizeof *e);
  e->command = strchr(cmd, '/') ? resolve_path(f->dir, cmd) : kl_strdup(cmd);
  e->api_version = kl_strdup(apiv);
  e->install_hint = dup_or_null(ygets(f, x, "installHint"));
  e->provide_cluster_info =
      yaml_truthy(yscalar(yget(f, x, "provideClusterInfo")));
  yaml_node_t *args = yget(f, x, "args");
  if (args && args->type == YAML_SEQUENCE_NODE) {
    size_t n = (size_t)(args->data.sequence.items.top -
                        args->data.sequence.items.start);
    e->args = kl_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
      const char *a = yscalar(ynode(f, args->data.sequence.items.start[i]));
      e->args[e->nargs++] = kl_strdup(a ? a : "");
    }
  }
  yaml_node_t *env = yget(f, x, "env");
  if (env && env->type == YAML_SEQUENCE_NODE) {
    size_t n = (size_t)(env->data.sequence.items.top -
                        env->data.sequence.items.start);
    e->env = kl_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
      yaml_node_t *kv = ynode(f, env->data.sequence.items.start[i]);
      const char *name = yscalar(yget(f, kv, "name"));
      const char *val = yscalar(yget(f, kv, "value"));
      if (!name || !*name) continue;
      e->env[e->nenv++] = kl_sprintf("%s=%s", name, val ? val : "");
    }
  }
  *out = e;
  return 0;
}

static int resolve_context(kfile *files, int nfiles, const char *ctxname,
                           const char *ns_override, kl_kubeconfig **out,
                           char **err) {
  kentries clusters = {0}, users = {0}, contexts = {0};
  const char *current = NULL;
  kfile *current_file = NULL;
  int rc = 0;
  kl_kubeconfig *kc = NULL;
  for (int i = 0; i < nfiles && rc == 0; i++) {
    if (!files[i].loaded) continue;
    rc = collect(&files[i], "clusters", "cluster", &clusters, err);
    if (!rc) rc = collect(&files[i], "users", "user", &users, err);
    if (!rc) rc = collect(&files[i], "contexts", "context", &contexts, err);
    if (!current) {
      current = ygets(&files[i],
                      yaml_document_get_root_node(&files[i].doc),
                      "current-context");
      current_file = &files[i];
    }
  }
  if (rc) goto out;
  /* the list of files, for messages */
  kl_buf names = KL_BUF_INIT;
  for (int i = 0; i < nfiles; i++)
    if (files[i].loaded)
      kl_buf_addf(&names, "%s%s", names.len ? ", " : "", files[i].path);
  const char *where = names.len ? names.data : "(no file)";
  if (!ctxname) ctxname = current;
  if (!ctxname) {
    *err = kl_sprintf("kubeconfig %s: no current-context is set and no "
                      "--context was given", where);
    rc = KL_EINVAL;
    kl_buf_free(&names);
    goto out;
  }
  kentry *ctx = kentries_find(&contexts, ctxname);
  if (!ctx) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\" not found%s", where,
                      ctxname,
                      ctxname == current && current_file
                          ? " (it is the current-context)" : "");
    rc = KL_ENOENT;
    kl_buf_free(&names);
    goto out;
  }
  kl_buf_free(&names);
  kfile *cf = ctx->file;
  const char *cname = ygets(cf, ctx->body, "cluster");
  const char *uname = ygets(cf, ctx->body, "user");
  kentry *cl = cname ? kentries_find(&clusters, cname) : NULL;
  if (!cl) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\": cluster \"%s\" not "
                      "found", cf->path, ctxname, cname ? cname : "");
    rc = KL_ENOENT;
    goto out;
  }
  kentry *us = uname ? kentries_find(&users, uname) : NULL;
  if (uname && !us) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\": user \"%s\" not found",
                      cf->path, ctxname, uname);
    rc = KL_ENOENT;
    goto out;
  }
  kc = kl_calloc(1, sizeof *kc);
  kc->source = kl_strdup(cf->path);
  kc->context = kl_strdup(ctxname);
  kc->cluster_name = kl_strdup(cname);
  kc->user_name = kl_strdup(uname ? uname : "");
  const char *ns = ns_override ? ns_override : ygets(cf, ctx->body,
                                                     "namespace");
  kc->namespace = kl_strdup(ns ? ns : "default");

  kfile *clf = cl->file;
  const char *server = ygets(clf, cl->body, "server");
  if (!server) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\": cluster \"%s\" has no "
                      "server", clf->path, ctxname, cname);
    rc = KL_EINVAL;
    goto out;
  }
  if (strncmp(server, "https://", 8) && strncmp(server, "http://", 7)) {
    *err = kl_sprintf("kubeconfig %s: context \"%s\": cluster \"%s\": server "
                      "\"%s\" is not an http(s) URL", clf->path, ctxname,
                      cname, server);
    rc = KL_EINVAL;
    goto out;
  }
  size_t sl = strlen(server);
  while (sl > 8 && server[sl - 1] == '/') sl--;
  kc->server = kl_strndup(server, sl);
  kc->insecure = yaml_truthy(yscalar(yget(clf, cl->body,
                                          "insecure-skip-tls-verify")));
  kc->tls_server_name = dup_or_null(ygets(clf, cl->body, "tls-server-name"));
  kc->proxy_url = dup_or_null(ygets(clf, cl->body, "proxy-url"));
  rc = load_pem(clf, cl->body, "certificate-authority-data",
                "certificate-authority", "certificate-authority", ctxname,
                &kc->ca_data, &kc->ca_len, &kc->ca_file, err);
  if (rc) goto out;

  if (us && us->body) {
    kfile *uf = us->file;
    yaml_node_t *u = us->body;
    if (yget(uf, u, "auth-provider")) {
      const char *ap = ygets(uf, yget(uf, u, "auth-provider"), "name");
      *err = kl_sprintf("kubeconfig %s: context \"%s\": user \"%s\": "
                        "auth-provider \"%s\" is not supported; use an exec "
                        "credential plugin", uf->path, ctxname, uname,
                        ap ? ap : "");
      rc = KL_EINVAL;
      goto out;
    }
    kc->token = dup_or_null(ygets(uf, u, "token"));
    kc->token_file = resolve_path(uf->dir, ygets(uf, u, "tokenFile"));
    kc->username = dup_or_null(ygets(uf, u, "username"));
    kc->password = dup_or_null(ygets(uf, u, "password"));
    rc = load_pem(uf, u, "client-certificate-data", "client-certificate",
                  "client-certificate", ctxname, &kc->cert_data,
                  &kc->cert_len, NULL, err);
    if (!rc)
      rc = load_pem(uf, u, "client-key-data", "client-key", "client-key",
                    ctxname, &kc->key_data, &kc->key_len, NULL, err);
    if (rc) goto out;
    if (!kc->cert_data != !kc->key_data) {
      *err = kl_sprintf("kubeconfig %s: context \"%s\": user \"%s\" has a "
                        "client %s but no client %s", uf->path, ctxname,
                        uname, kc->cert_data ? "certificate" : "key",
                        kc->cert_data ? "key" : "certificate");
      rc = KL_EINVAL;
      goto out;
    }
    yaml_node_t *x = yget(uf, u, "exec");
    if (x && x->type == YAML_MAPPING_NODE) {
      rc = parse_exec(uf, x, ctxname, uname, &kc->exec, err);
      if (rc) goto out;
    }
  }
out:
  free(clusters.v);
  free(users.v);
  free(contexts.v);
  if (rc) {
    kl_kubeconfig_free(kc);
    return rc;
  }
  *out = kc;
  return 0;
}

int kl_kubeconfig_in_cluster(kl_kubeconfig **out, char **err) {
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  const char *port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port) {
    *err = kl_strdup("not running in a cluster: KUBERNETES_SERVICE_HOST and "
                     "KUBERNETES_SERVICE_PORT are not set");
    return KL_ENOENT;
  }
  const char *dir = getenv("KLUA_SERVICEACCOUNT_DIR");
  if (!dir || !*dir) dir = DEFAULT_SA_DIR;
  char *tokpath = kl_sprintf("%s/token", dir);
  if (access(tokpath, R_OK) != 0) {
    *err = kl_sprintf("in-cluster config: cannot read service account token "
                      "%s: %s", tokpath, strerror(errno));
    free(tokpath);
    return KL_EIO;
  }
  kl_kubeconfig *kc = kl_calloc(1, sizeof *kc);
  kc->in_cluster = true;
  kc->source = kl_strdup("in-cluster");
  kc->context = kl_strdup("");
  kc->cluster_name = kl_strdup("in-cluster");
  kc->user_name = kl_strdup("serviceaccount");
  kc->server = strchr(host, ':') ? kl_sprintf("https://[%s]:%s", host, port)
                                 : kl_sprintf("https://%s:%s", host, port);
  kc->token_file = tokpath;
  char *ca = kl_sprintf("%s/ca.crt", dir);
  if (read_file(ca, &kc->ca_data, &kc->ca_len) == 0)
    kc->ca_file = ca;
  else {
    kl_log(KL_LOG_WARN, "kubeconfig", "in-cluster: no CA at %s; using the "
           "system trust store", ca);
    free(ca);
  }
  char *nsp = kl_sprintf("%s/namespace", dir), *nsdata = NULL;
  size_t nslen = 0;
  if (read_file(nsp, &nsdata, &nslen) == 0) {
    kc->namespace = trim_dup(nsdata, nslen);
    free(nsdata);
  }
  free(nsp);
  if (!kc->namespace || !*kc->namespace) {
    free(kc->namespace);
    kc->namespace = kl_strdup("default");
  }
  *out = kc;
  return 0;
}

int kl_kubeconfig_load(const kl_kubeconfig_opts *opts, kl_kubeconfig **out,
                       char **err) {
  kl_kubeconfig_opts none = {0};
  if (!opts) opts = &none;
  *out = NULL;
  *err = NULL;
  char **paths = NULL;
  int npaths = 0;
  bool explicit = false;
  const char *env = getenv("KUBECONFIG");
  if (opts->path && *opts->path) {
    paths = kl_calloc(1, sizeof(char *));
    paths[npaths++] = kl_strdup(opts->path);
    explicit = true;
  } else if (env && *env) {
    char *copy = kl_strdup(env), *save = NULL;
    for (char *t = strtok_r(copy, ":", &save); t;
         t = strtok_r(NULL, ":", &save)) {
      bool dup = false;
      for (int i = 0; i < npaths; i++) dup |= !strcmp(paths[i], t);
      if (dup) continue;
      paths = kl_realloc(paths, sizeof(char *) * (size_t)(npaths + 1));
      paths[npaths++] = kl_strdup(t);
    }
    free(copy);
  } else if (getenv("HOME")) {
    char *p = kl_sprintf("%s/.kube/config", getenv("HOME"));
    if (access(p, F_OK) == 0) {
      paths = kl_calloc(1, sizeof(char *));
      paths[npaths++] = p;
    } else {
      free(p);
    }
  }
  kfile *files = kl_calloc((size_t)npaths + 1, sizeof(kfile));
  int rc = 0, nloaded = 0;
  for (int i = 0; i < npaths; i++) {
    rc = kfile_load(&files[i], paths[i], err);
    if (rc == -ENOENT && !explicit) {
      rc = 0;
      continue;
    }
    if (rc < 0 && !*err) {
      *err = kl_sprintf("kubeconfig %s: cannot read: %s", paths[i],
                        strerror(-rc));
      rc = rc == -ENOENT ? KL_ENOENT : KL_EIO;
    }
    if (rc) break;
    nloaded++;
  }
  if (!rc && nloaded == 0) {
    if (getenv("KUBERNETES_SERVICE_HOST") && !opts->context) {
      rc = kl_kubeconfig_in_cluster(out, err);
      if (!rc && opts->namespace) {
        free((*out)->namespace);
        (*out)->namespace = kl_strdup(opts->namespace);
      }
    } else {
      *err = kl_sprintf("no kubeconfig found (tried %s) and not running in "
                        "a cluster", env && *env ? "$KUBECONFIG"
                                                 : "~/.kube/config");
      rc = KL_ENOENT;
    }
  } else if (!rc) {
    rc = resolve_context(files, npaths, opts->context, opts->namespace, out,
                         err);
  }
  for (int i = 0; i < npaths; i++) {
    kfile_free(&files[i]);
    free(paths[i]);
  }
  free(files);
  free(paths);
  return rc;
}

/* ---- credentials ------------------------------------------------------- */

struct kl_creds {
  pthread_mutex_t mu;
  uint64_t generation;
  /* static */
  char *token, *username, *password;
  char *cert_data, *key_data;
  size_t cert_len, key_len;
  /* token file */
  char *token_file;
  char *file_token;
  double file_checked;
  struct stat file_st;
  bool file_force;
  /* exec */
  kl_exec_config *exec;
  char *exec_info; /* KUBERNETES_EXEC_INFO value */
  char *where;     /* "user \"u\" in FILE" for messages */
  bool exec_valid;
  time_t exec_expiry; /* 0: no expiry */
  char *exec_token, *exec_cert, *exec_key;
  size_t exec_cert_len, exec_key_len;
};

static char *memdup(const char *p, size_t n) {
  if (!p) return NULL;
  char *q = kl_malloc(n + 1);
  memcpy(q, p, n);
  q[n] = '\0';
  return q;
}

kl_creds *kl_creds_new(const kl_kubeconfig *kc) {
  kl_creds *c = kl_calloc(1, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  c->generation = 1;
  c->token = dup_or_null(kc->token);
  c->username = dup_or_null(kc->username);
  c->password = dup_or_null(kc->password);
  c->cert_data = memdup(kc->cert_data, kc->cert_len);
  c->cert_len = kc->cert_len;
  c->key_data = memdup(kc->key_data, kc->key_len);
  c->key_len = kc->key_len;
  c->token_file = dup_or_null(kc->token_file);
  c->file_checked = -1e9;
  c->where = kl_sprintf("user \"%s\" in %s", kc->user_name ? kc->user_name
                                                           : "", kc->source);
  if (kc->exec) {
    kl_exec_config *x = kl_calloc(1, sizeof *x), *s = kc->exec;
    x->command = kl_strdup(s->command);
    x->args = kl_calloc((size_t)s->nargs + 1, sizeof(char *));
    for (int i = 0; i < s->nargs; i++) x->args[x->nargs++] =
        kl_strdup(s->args[i]);
    x->env = kl_calloc((size_t)s->nenv + 1, sizeof(char *));
    for (int i = 0; i < s->nenv; i++) x->env[x->nenv++] = kl_strdup(s->env[i]);
    x->api_version = kl_strdup(s->api_version);
    x->install_hint = dup_or_null(s->install_hint);
    c->exec = x;
    kl_buf b = KL_BUF_INIT;
    kl_buf_adds(&b, "{\"apiVersion\":");
    json_quote_c(&b, s->api_version);
    kl_buf_adds(&b, ",\"kind\":\"ExecCredential\",\"spec\":{");
    if (s->provide_cluster_info) {
      kl_buf_adds(&b, "\"cluster\":{\"server\":");
      json_quote_c(&b, kc->server);
      if (kc->tls_server_name) {
        kl_buf_adds(&b, ",\"tls-server-name\":");
        json_quote_c(&b, kc->tls_server_name);
      }
      if (kc->insecure) kl_buf_adds(&b, ",\"insecure-skip-tls-verify\":true");
      if (kc->ca_data) {
        kl_buf_adds(&b, ",\"certificate-authority-data\":\"");
        b64_encode(&b, kc->ca_data, kc->ca_len);
        kl_buf_addc(&b, '"');
      }
      if (kc->proxy_url) {
        kl_buf_adds(&b, ",\"proxy-url\":");
        json_quote_c(&b, kc->proxy_url);
      }
      kl_buf_adds(&b, "},");
    }
    kl_buf_adds(&b, "\"interactive\":false}}");
    c->exec_info = kl_buf_detach(&b, NULL);
  }
  return c;
}

static void exec_drop(kl_creds *c) {
  wipe_str(c->exec_token);
  free(c->exec_cert);
  wipe_free(c->exec_key, c->exec_key_len);
  c->exec_token = c->exec_cert = c->exec_key = NULL;
  c->exec_cert_len = c->exec_key_len = 0;
  c->exec_valid = false;
}

void kl_creds_free(kl_creds *c) {
  if (!c) return;
  pthread_mutex_destroy(&c->mu);
  wipe_str(c->token);
  free(c->username);
  wipe_str(c->password);
  free(c->cert_data);
  wipe_free(c->key_data, c->key_len);
  free(c->token_file);
  wipe_str(c->file_token);
  exec_drop(c);
  exec_config_free(c->exec);
  free(c->exec_info);
  free(c->where);
  free(c);
}

void kl_cred_clear(kl_cred *c) {
  if (!c) return;
  wipe_str(c->token);
  free(c->cert_data);
  wipe_free(c->key_data, c->key_len);
  free(c->username);
  wipe_str(c->password);
  memset(c, 0, sizeof *c);
}

/* Re-reads the token file when due. Called with mu held. */
static int refresh_token_file(kl_creds *c, char **err) {
  double now = kl_now();
  if (!c->file_force && c->file_token &&
      now - c->file_checked < TOKEN_RECHECK_S)
    return 0;
  c->file_checked = now;
  struct stat st;
  if (stat(c->token_file, &st) != 0) {
    if (c->file_token) return 0; /* keep the last token (rotation window) */
    *err = kl_sprintf("cannot read token file %s: %s", c->token_file,
                      strerror(errno));
    return KL_EIO;
  }
  if (!c->file_force && c->file_token && st.st_mtim.tv_sec ==
      c->file_st.st_mtim.tv_sec && st.st_mtim.tv_nsec ==
      c->file_st.st_mtim.tv_nsec && st.st_size == c->file_st.st_size &&
      st.st_ino == c->file_st.st_ino)
    return 0;
  char *data = NULL;
  size_t len = 0;
  int rc = read_file(c->token_file, &data, &len);
  if (rc < 0) {
    if (c->file_token) return 0;
    *err = kl_sprintf("cannot read token file %s: %s", c->token_file,
                      strerror(-rc));
    return KL_EIO;
  }
  char *tok = trim_dup(data, len);
  wipe_free(data, len);
  if (!*tok) {
    free(tok);
    if (c->file_token) return 0;
    *err = kl_sprintf("token file %s is empty", c->token_file);
    return KL_EINVAL;
  }
  c->file_force = false;
  c->file_st = st;
  if (!c->file_token || strcmp(tok, c->file_token)) c->generation++;
  wipe_str(c->file_token);
  c->file_token = tok;
  return 0;
}

/* Finds cmd on PATH (before fork: execve in the child needs a path). */
static char *find_exe(const char *cmd) {
  if (strchr(cmd, '/')) return kl_strdup(cmd);
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  char *copy = kl_strdup(path), *save = NULL, *found = NULL;
  for (char *d = strtok_r(copy, ":", &save); d && !found;
       d = strtok_r(NULL, ":", &save)) {
    char *p = kl_sprintf("%s/%s", *d ? d : ".", cmd);
    if (access(p, X_OK) == 0) found = p;
    else free(p);
  }
  free(copy);
  return found;
}

/* Parses RFC 3339 ("2030-01-01T00:00:00Z", fraction and offset allowed). */
static time_t parse_rfc3339(const char *s) {
  struct tm tm = {0};
  const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!p) return (time_t)-1;
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') p++;
  }
  time_t t = timegm(&tm);
  if (*p == 'Z' || *p == 'z' || !*p) return t;
  if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
    int hh = (p[1] - '0') * 10 + (p[2] - '0');
    int mm = (p[4] - '0') * 10 + (p[5] - '0');
    long off = hh * 3600L + mm * 60L;
    return *p == '+' ? t - off : t + off;
  }
  return (time_t)-1;
}

/* Runs the exec plugin and caches its result. Called with mu held. */
static int run_exec(kl_creds *c, char **err) {
  kl_exec_config *x = c->exec;
  char *exe = find_exe(x->command);
  if (!exe) {
    *err = kl_sprintf("exec plugin \"%s\" (%s): executable not found on "
                      "PATH%s%s", x->command, c->where,
                      x->install_hint ? "; " : "",
                      x->install_hint ? x->install_hint : "");
    return KL_ENOENT;
  }
  /* argv and envp are built before fork: the child only calls execve. */
  char **argv = kl_calloc((size_t)x->nargs + 2, sizeof(char *));
  argv[0] = x->command;
  for (int i = 0; i < x->nargs; i++) argv[i + 1] = x->args[i];
  size_t nenv = 0;
  while (environ && environ[nenv]) nenv++;
  char **envp = kl_calloc(nenv + (size_t)x->nenv + 2, sizeof(char *));
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++) {
    const char *e = environ[i];
    size_t nl = strcspn(e, "=");
    bool over = !strncmp(e, "KUBERNETES_EXEC_INFO=", 21);
    for (int j = 0; j < x->nenv && !over; j++)
      over = !strncmp(e, x->env[j], nl) && x->env[j][nl] == '=';
    if (!over) envp[k++] = (char *)e;
  }
  for (int j = 0; j < x->nenv; j++) envp[k++] = x->env[j];
  char *info = kl_sprintf("KUBERNETES_EXEC_INFO=%s", c->exec_info);
  envp[k++] = info;
  int fds[2];
  int rc = 0;
  pid_t pid = -1;
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *err = kl_sprintf("exec plugin \"%s\" (%s): pipe: %s", x->command,
                      c->where, strerror(errno));
    rc = KL_EIO;
    goto done;
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid = fork();
  if (pid == 0) {
    if (devnull >= 0) dup2(devnull, 0);
    dup2(fds[1], 1);
    execve(exe, argv, envp);
    _exit(127);
  }
  if (devnull >= 0) close(devnull);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    *err = kl_sprintf("exec plugin \"%s\" (%s): fork: %s", x->command,
                      c->where, strerror(errno));
    rc = KL_EIO;
    goto done;
  }
  kl_buf out = KL_BUF_INIT;
  char tmp[4096];
  for (;;) {
    ssize_t r = read(fds[0], tmp, sizeof tmp);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (out.len < MAX_FILE_BYTES) kl_buf_add(&out, tmp, (size_t)r);
  }
  close(fds[0]);
  int wst = 0;
  while (waitpid(pid, &wst, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
    if (WIFEXITED(wst))
      *err = kl_sprintf("exec plugin \"%s\" (%s) exited with status %d%s%s",
                        x->command, c->where, WEXITSTATUS(wst),
                        WEXITSTATUS(wst) == 127 && x->install_hint ? "; " : "",
                        WEXITSTATUS(wst) == 127 && x->install_hint
                            ? x->install_hint : "");
    else
      *err = kl_sprintf("exec plugin \"%s\" (%s) was killed by signal %d",
                        x->command, c->where, WTERMSIG(wst));
    wipe_free(out.data, out.cap);
    rc = KL_EIO;
    goto done;
  }
  cJSON *j = cJSON_ParseWithLength(out.data ? out.data : "", out.len);
  wipe_free(out.data, out.cap);
  const char *bad = NULL;
  cJSON *st = j ? cJSON_GetObjectItemCaseSensitive(j, "status") : NULL;
  const char *apiv = j ? cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(j, "apiVersion")) : NULL;
  const char *kind = j ? cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(j, "kind")) : NULL;
  const char *tok = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(st, "token"));
  const char *crt = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(st, "clientCertificateData"));
  const char *key = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(st, "clientKeyData"));
  const char *exp = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(st, "expirationTimestamp"));
  if (!j) bad = "its output is not JSON";
  else if (!kind || strcmp(kind, "ExecCredential"))
    bad = "its output is not an ExecCredential";
  else if (!apiv || strcmp(apiv, x->api_version))
    bad = "it answered with a different apiVersion than configured";
  else if (!cJSON_IsObject(st)) bad = "its output has no status";
  else if (!tok && !(crt && key))
    bad = "its status has neither a token nor clientCertificateData and "
          "clientKeyData";
  else if (!tok && (crt || key) && !(crt && key))
    bad = "its status has only one of clientCertificateData/clientKeyData";
  time_t expiry = 0;
  if (!bad && exp && *exp) {
    expiry = parse_rfc3339(exp);
    if (expiry == (time_t)-1) bad = "its status.expirationTimestamp is not "
                                    "RFC 3339";
  }
  if (bad) {
    *err = kl_sprintf("exec plugin \"%s\" (%s): %s", x->command, c->where,
                      bad);
    rc = KL_EPROTO;
  } else {
    exec_drop(c);
    c->exec_token = dup_or_null(tok);
    if (crt && key) {
      c->exec_cert = kl_strdup(crt);
      c->exec_cert_len = strlen(crt);
      c->exec_key = kl_strdup(key);
      c->exec_key_len = strlen(key);
    }
    c->exec_expiry = expiry;
    c->exec_valid = true;
    c->generation++;
  }
  if (j) {
    /* wipe secrets inside the tree before freeing it */
    cJSON *s;
    cJSON_ArrayForEach(s, st) {
      if (cJSON_IsString(s)) {
        volatile char *v = s->valuestring;
        for (size_t i = 0; v[i]; i++) v[i] = 0;
      }
    }
    cJSON_Delete(j);
  }
done:
  free(exe);
  free(argv);
  free(envp);
  free(info);
  return rc;
}

int kl_creds_get(kl_creds *c, kl_cred *out, char **err) {
  memset(out, 0, sizeof *out);
  *err = NULL;
  int rc = 0;
  pthread_mutex_lock(&c->mu);
  const char *tok = c->token;
  const char *cert = c->cert_data, *key = c->key_data;
  size_t cl = c->cert_len, kln = c->key_len;
  if (c->exec) {
    if (c->exec_valid && c->exec_expiry && time(NULL) >= c->exec_expiry)
      c->exec_valid = false;
    if (!c->exec_valid) rc = run_exec(c, err);
    if (!rc) {
      if (c->exec_token) tok = c->exec_token;
      if (c->exec_cert) {
        cert = c->exec_cert, cl = c->exec_cert_len;
        key = c->exec_key, kln = c->exec_key_len;
      }
    }
  } else if (c->token_file) {
    rc = refresh_token_file(c, err);
    if (!rc && !tok) tok = c->file_token;
  }
  if (!rc) {
    out->token = dup_or_null(tok);
    out->cert_data = memdup(cert, cl);
    out->cert_len = cert ? cl : 0;
    out->key_data = memdup(key, kln);
    out->key_len = key ? kln : 0;
    out->username = dup_or_null(c->username);
    out->password = dup_or_null(c->password);
    out->generation = c->generation;
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

bool kl_creds_invalidate(kl_creds *c, uint64_t generation) {
  pthread_mutex_lock(&c->mu);
  bool dynamic = c->exec || (c->token_file && !c->token);
  if (dynamic && generation == c->generation) {
    if (c->exec) exec_drop(c);
    else c->file_force = true;
    c->generation++;
  }
  pthread_mutex_unlock(&c->mu);
  return dynamic;
}
