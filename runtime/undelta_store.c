/* undelta_store.c: write to the wrapped store, then push its full list. */
#include "undelta_store.h"

#include <pthread.h>
#include <stdlib.h>

#include "kl.h"

struct kl_undelta_store {
  pthread_mutex_t mu;
  kl_store *store;
  kl_undelta_push_fn push;
  void *ud;
};

static _Thread_local const kl_undelta_store *tl_pushing;

kl_undelta_store *kl_undelta_store_new(kl_store *store,
                                       kl_undelta_push_fn push, void *ud) {
  kl_undelta_store *u = kl_calloc(1, sizeof *u);
  pthread_mutex_init(&u->mu, NULL);
  u->store = store ? kl_store_ref(store) : kl_store_new();
  u->push = push;
  u->ud = ud;
  return u;
}

void kl_undelta_store_free(kl_undelta_store *u) {
  if (!u) return;
  kl_store_unref(u->store);
  pthread_mutex_destroy(&u->mu);
  free(u);
}

kl_store *kl_undelta_store_store(kl_undelta_store *u) { return u->store; }

enum { OP_ADD, OP_UPDATE, OP_DELETE, OP_REPLACE };

static int write_and_push(kl_undelta_store *u, int op, kl_obj *obj,
                          kl_obj *const *objs, size_t n, const char *rv) {
  if (tl_pushing == u) {
    kl_log(KL_LOG_ERROR, "undelta_store",
           "write from inside the push callback refused (it would "
           "deadlock)");
    return KL_EINVAL;
  }
  if (op != OP_REPLACE && !obj) return KL_EINVAL;
  pthread_mutex_lock(&u->mu);
  int rc;
  switch (op) {
  case OP_ADD: rc = kl_store_add(u->store, obj); break;
  case OP_UPDATE: rc = kl_store_update(u->store, obj); break;
  case OP_DELETE: rc = kl_store_delete(u->store, obj); break;
  default: rc = kl_store_replace(u->store, objs, n, rv); break;
  }
  if (rc == 0 && u->push) {
    kl_objv state = {0};
    kl_store_list(u->store, &state);
    const kl_undelta_store *saved = tl_pushing;
    tl_pushing = u;
    u->push(&state, u->ud);
    tl_pushing = saved;
    kl_objv_free(&state);
  }
  pthread_mutex_unlock(&u->mu);
  return rc;
}

int kl_undelta_store_add(kl_undelta_store *u, kl_obj *obj) {
  return write_and_push(u, OP_ADD, obj, NULL, 0, NULL);
}
int kl_undelta_store_update(kl_undelta_store *u, kl_obj *obj) {
  return write_and_push(u, OP_UPDATE, obj, NULL, 0, NULL);
}
int kl_undelta_store_delete(kl_undelta_store *u, const kl_obj *obj) {
  return write_and_push(u, OP_DELETE, (kl_obj *)obj, NULL, 0, NULL);
}
int kl_undelta_store_replace(kl_undelta_store *u, kl_obj *const *objs,
                             size_t n, const char *resource_version) {
  return write_and_push(u, OP_REPLACE, NULL, objs, n, resource_version);
}
