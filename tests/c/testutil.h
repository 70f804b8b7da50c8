/* testutil.h: helpers shared by klua's C test programs: reading and writing
 * files, running shell commands, the captured API server exchanges of
 * k8s-wire, small ConfigMap objects, and comparing cJSON trees. Header-only
 * because each test program is built alone against libklua.a. Meant for the
 * tests' main thread (setup and checks). */
#ifndef KL_TESTUTIL_H
#define KL_TESTUTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "kl.h"
#include "object.h"

/* The whole file as a NEW NUL-terminated string (free it), its length in
 * *len (may be NULL); NULL when it cannot be opened. */
static inline char *tu_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  kl_buf b = KL_BUF_INIT;
  char chunk[8192];
  size_t n;
  kl_buf_reserve(&b, 0);
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) kl_buf_add(&b, chunk, n);
  fclose(f);
  return kl_buf_detach(&b, len);
}

/* Writes text to path; exits the test program when that fails. */
static inline void tu_write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
}

/* Runs a shell command; exits the test program when it fails. */
static inline void tu_sh(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static inline void tu_sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  if (system(cmd) != 0) {
    printf("# command failed: %s\n", cmd);
    exit(1);
  }
}

/* Where the captures of a real kube-apiserver are: $KLUA_WIRE_DIR or
 * /work/shared/k8s-wire. */
static inline const char *tu_wire_dir(void) {
  const char *d = getenv("KLUA_WIRE_DIR");
  return d && *d ? d : "/work/shared/k8s-wire";
}

/* In the text of a captured .http exchange, the start of the response body
 * (after the blank line that ends the response headers); NULL when there
 * is none. Borrowed from text. */
static inline const char *tu_http_body_of(const char *text) {
  const char *r = strstr(text, "=== response\n");
  const char *body = r ? strstr(r, "\n\n") : NULL;
  return body ? body + 2 : NULL;
}

/* The response body of the capture at tu_wire_dir()/rel as a NEW string
 * (free it), its length in *n; NULL (and a message) when unreadable. */
static inline char *tu_wire_body(const char *rel, size_t *n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", tu_wire_dir(), rel);
  size_t len;
  char *text = tu_slurp(path, &len);
  if (!text) {
    printf("  cannot read %s\n", path);
    return NULL;
  }
  const char *body = tu_http_body_of(text);
  char *out = NULL;
  if (body) {
    *n = len - (size_t)(body - text);
    out = kl_strndup(body, *n);
  }
  free(text);
  return out;
}

/* A NEW ConfigMap object ns/name at resourceVersion rv (aborts on error). */
static inline kl_obj *tu_configmap(const char *ns, const char *name,
                                   const char *rv) {
  char json[256];
  snprintf(json, sizeof json,
           "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
           "{\"namespace\":\"%s\",\"name\":\"%s\",\"resourceVersion\":\"%s\"}}",
           ns, name, rv);
  kl_obj *o = NULL;
  if (kl_obj_new(json, strlen(json), NULL, &o, NULL) != 0) abort();
  return o;
}

/* Calls fn(f, obj) for a NEW ConfigMap ns/name@rv, checks it returns 0 and
 * drops the object (e.g. TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1")). */
#define TU_ADD(f, fn, ns, name, rv)                                           \
  do {                                                                        \
    kl_obj *o_ = tu_configmap(ns, name, rv);                                  \
    CHECK_EQ_INT(fn(f, o_), 0);                                               \
    kl_obj_unref(o_);                                                         \
  } while (0)

#ifdef KL_DELTA_FIFO_H
/* The resourceVersion of a delta's object, "(null)" for none. Borrowed. */
static inline const char *tu_rv_of(const kl_delta *d) {
  return d->obj ? kl_obj_resource_version(d->obj) : "(null)";
}
#endif

#ifdef cJSON__h
/* True when the tree equals the JSON text; prints both otherwise. */
static inline bool tu_json_same(const cJSON *got, const char *want) {
  cJSON *w = cJSON_Parse(want);
  if (!w) printf("  bad test JSON: %s\n", want);
  bool eq = got && w && cJSON_Compare(got, w, 1);
  if (!eq) {
    char *g = got ? cJSON_PrintUnformatted(got) : NULL;
    printf("  got  %s\n  want %s\n", g ? g : "(null)", want);
    free(g);
  }
  cJSON_Delete(w);
  return eq;
}
#endif

#endif
