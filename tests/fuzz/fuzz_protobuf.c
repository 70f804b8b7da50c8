/* fuzz_protobuf.c: protobuf.c's decoder for kubectl's protobuf bodies.
 * kl_protobuf_decode must return 0 with a NEW JSON object that carries kind,
 * apiVersion and metadata (of a supported kind) and prints as valid JSON,
 * or KL_EPROTO/KL_EINVAL with a message starting "protobuf:"; every read is
 * bounds-checked, so ASan sees no out-of-range access on any input. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "json.h"
#include "protobuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  /* an exact-size heap copy, so ASan catches reads one past the end */
  uint8_t *copy = kl_malloc(size ? size : 1);
  if (size) memcpy(copy, data, size);
  cJSON *out = NULL;
  char *err = NULL;
  int rc = kl_protobuf_decode(copy, size, &out, &err);
  if (rc == 0) {
    FZ_ASSERT(cJSON_IsObject(out));
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(out, "kind");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(out, "apiVersion");
    FZ_ASSERT(cJSON_IsString(k) && cJSON_IsString(v));
    FZ_ASSERT(kl_protobuf_supported(v->valuestring, k->valuestring));
    char *s = cJSON_PrintUnformatted(out);
    FZ_ASSERT(s && kl_json_validate(s, strlen(s)) == 0);
    free(s);
  } else {
    FZ_ASSERT(rc == KL_EPROTO || rc == KL_EINVAL);
    FZ_ASSERT(out == NULL && err && !strncmp(err, "protobuf", 8));
  }
  cJSON_Delete(out);
  free(err);
  free(copy);
  return 0;
}
