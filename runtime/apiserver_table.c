/* apiserver_table.c: Table rendering (Accept ...;as=Table) for the local
 * API server (placeholder: plain lists; the second API-server helper
 * replaces this file). */
#include "apiserver.h"

int kl_as_table_list(kl_apiserver *s, const kl_as_resource *res,
                     kl_obj *const *items, size_t n, const char *rv,
                     const char *cont, long remaining, const kl_as_opts *o,
                     kl_buf *out) {
  (void)s, (void)res, (void)items, (void)n, (void)rv, (void)cont,
      (void)remaining, (void)o, (void)out;
  return KL_ENOENT;
}

int kl_as_table_object(kl_apiserver *s, const kl_as_resource *res,
                       const kl_obj *obj, bool first, const kl_as_opts *o,
                       kl_buf *out) {
  (void)s, (void)res, (void)obj, (void)first, (void)o, (void)out;
  return KL_ENOENT;
}
