/* apiserver_fixture.h: an in-process API server (kl_apiserver on a free
 * 127.0.0.1 port, faults on) and a kl_rest client for it, configured
 * through a kubeconfig file as a program would be. Used by the C tests of
 * modules that talk to the API (test_events.c, test_leader.c). Header-only
 * because each test program is built alone against libklua.a; call it from
 * the test's main thread. */
#ifndef KL_APISERVER_FIXTURE_H
#define KL_APISERVER_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apiserver.h"
#include "kubeconfig.h"
#include "rest.h"

/* Starts the server (*srv) and makes a client for it (*rest) through a
 * temporary kubeconfig whose context namespace is "default" (removed
 * again). Both are NEW: the caller frees them (kl_rest_free first). Exits
 * the test program when either cannot be made. */
static inline void tu_apiserver_up(kl_apiserver **srv, kl_rest **rest) {
  kl_apiserver_opts o = {.listen = "127.0.0.1:0", .faults = "on"};
  char *err = NULL;
  if (kl_apiserver_new(&o, srv, &err) || kl_apiserver_start(*srv, &err)) {
    printf("  apiserver: %s\n", err);
    exit(1);
  }
  char dir[64], path[96];
  snprintf(dir, sizeof dir, "/tmp/klua-test-apiserver-%d", (int)getpid());
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/kubeconfig", dir);
  FILE *f = fopen(path, "w");
  fprintf(f,
          "current-context: t\nclusters:\n- name: c\n  cluster:\n"
          "    server: %s\nusers:\n- name: u\n  user: {}\n"
          "contexts:\n- name: t\n  context: {cluster: c, user: u, "
          "namespace: default}\n",
          kl_apiserver_url(*srv));
  fclose(f);
  kl_kubeconfig_opts ko = {.path = path};
  kl_kubeconfig *kc = NULL;
  if (kl_kubeconfig_load(&ko, &kc, &err) ||
      kl_rest_new(kc, NULL, rest, &err)) {
    printf("  client: %s\n", err);
    exit(1);
  }
  kl_kubeconfig_free(kc);
  unlink(path);
  rmdir(dir);
}

#endif
