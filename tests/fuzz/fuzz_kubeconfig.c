/* fuzz_kubeconfig.c: kubeconfig.c on arbitrary kubeconfig files. There is
 * no in-memory loader, so each input is written to a private temporary
 * directory and loaded with opts.path (KUBECONFIG and HOME are unset so
 * nothing else is read). kl_kubeconfig_load must return 0 with a usable
 * configuration (server set, no trailing '/') or an error with a message;
 * kl_creds_new must accept any loaded configuration. Exec plugins are never
 * run (kl_creds_get is not called). Inputs naming device or proc files, or
 * using YAML escapes that could spell them, are skipped: reading /dev/stdin
 * or a FIFO would block the fuzzer, which is not a bug in the loader. */
#include <unistd.h>

#include "fuzz_common.h"
#include "kubeconfig.h"

static char dir[64], path[96];

static void cleanup(void) {
  unlink(path);
  rmdir(dir);
}

static void setup(void) {
  if (dir[0]) return;
  snprintf(dir, sizeof dir, "/tmp/klua-fuzz-kubeconfig-XXXXXX");
  if (!mkdtemp(dir)) abort();
  snprintf(path, sizeof path, "%s/config", dir);
  unsetenv("KUBECONFIG");
  unsetenv("HOME");
  unsetenv("KUBERNETES_SERVICE_HOST");
  atexit(cleanup);
}

static int unsafe(const uint8_t *d, size_t n) {
  static const char *const bad[] = {"/dev", "/proc", "/sys", "/run", "\\",
                                    "%", "..", NULL};
  for (int i = 0; bad[i]; i++)
    if (memmem(d, n, bad[i], strlen(bad[i]))) return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  setup();
  if (unsafe(data, size)) return 0;
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size) fwrite(data, 1, size, f);
  fclose(f);
  kl_kubeconfig_opts o = {.path = path};
  kl_kubeconfig *kc = NULL;
  char *err = NULL;
  int rc = kl_kubeconfig_load(&o, &kc, &err);
  if (rc == 0) {
    FZ_ASSERT(kc && kc->server && kc->namespace && kc->source && kc->context);
    size_t sl = strlen(kc->server);
    FZ_ASSERT(sl <= 8 || kc->server[sl - 1] != '/');
    kl_creds *c = kl_creds_new(kc);
    FZ_ASSERT(c);
    kl_creds_free(c);
    kl_kubeconfig_free(kc);
  } else {
    FZ_ASSERT(rc < 0 && err && *err);
    FZ_ASSERT(kc == NULL);
  }
  free(err);
  /* the same with a context override that may or may not exist */
  o.context = "ctx";
  o.namespace = "ns";
  kc = NULL;
  err = NULL;
  if (kl_kubeconfig_load(&o, &kc, &err) == 0) {
    FZ_ASSERT(!strcmp(kc->namespace, "ns"));
    kl_kubeconfig_free(kc);
  }
  free(err);
  return 0;
}
