/* apiserver_openapi.c: /openapi/v2 and /openapi/v3 for the local API server
 * (placeholder: 404; the second API-server helper replaces this file). */
#include "apiserver.h"

bool kl_as_openapi_handle(kl_apiserver *s, const kl_as_http_req *req,
                          kl_as_reply *rep) {
  (void)s, (void)req, (void)rep;
  return false;
}
