/* apiserver_faults.c: fault injection for the local API server (placeholder:
 * no faults; the second API-server helper replaces this file). Hooks: see
 * apiserver.h. */
#include "apiserver.h"

int kl_as_faults_init(kl_apiserver *s, const char *spec, char **err) {
  (void)s, (void)spec, (void)err;
  return 0;
}

bool kl_as_faults_handle(kl_apiserver *s, const kl_as_http_req *req,
                         kl_as_reply *rep) {
  (void)s, (void)req, (void)rep;
  return false;
}

void kl_as_faults_free(kl_apiserver *s) { (void)s; }
