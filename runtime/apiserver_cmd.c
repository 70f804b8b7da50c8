/* apiserver_cmd.c: `klua serve`, the local Kubernetes API server as a
 * program: parses flags, loads the --state-file, seeds manifests, prints the
 * URL as the first line of stdout, optionally writes a kubeconfig, and
 * serves until SIGINT or SIGTERM (then saves the --state-file). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apiserver.h"
#include "cli.h"

static const char usage[] =
    "usage: klua serve [options]\n"
    "\n"
    "Runs a local Kubernetes API server (in memory) for development and\n"
    "tests. kubectl, client libraries and klua controllers work against it.\n"
    "\n"
    "options:\n"
    "  --listen HOST:PORT        address (default 127.0.0.1:8001; port 0\n"
    "                            picks a free port)\n"
    "  --token TOKEN             require 'Authorization: Bearer TOKEN'\n"
    "  --tls-cert FILE           serve HTTPS with this PEM certificate...\n"
    "  --tls-key FILE            ...and this PEM key\n"
    "  --kubeconfig-out FILE     write a kubeconfig for this server\n"
    "  --seed PATH               load manifests (file or directory; may be\n"
    "                            repeated) before serving\n"
    "  --history N               changes kept for watches and paging\n"
    "                            (default 10000)\n"
    "  --bookmark-interval SECS  seconds between watch BOOKMARKs (default 60)\n"
    "  --max-body-bytes N        larger request bodies get 413 (default\n"
    "                            3145728)\n"
    "  --idle-timeout SECS       close connections idle this long; watch\n"
    "                            streams excepted (default 60)\n"
    "  --max-connections N       connections served at once; more are\n"
    "                            refused (default 1024)\n"
    "  --faults SPEC             fault injection (see docs/serve.md)\n"
    "  --state-file FILE         keep the objects across restarts: load FILE\n"
    "                            at start (when it exists, before --seed),\n"
    "                            save it on SIGINT/SIGTERM\n"
    "  --state-save-interval SECS  also save every SECS seconds when\n"
    "                            something changed\n"
    "\n"
    "The first line of stdout is 'listening on URL'. SIGINT or SIGTERM stop\n"
    "the server.\n";

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

static int write_kubeconfig(const char *path, const char *url,
                            const char *token, const char *cert_file) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "klua serve: --kubeconfig-out %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n- name: klua\n"
             "  cluster:\n    server: %s\n", url);
  if (cert_file) {
    FILE *c = fopen(cert_file, "rb");
    if (c) {
      kl_buf b = KL_BUF_INIT;
      char tmp[4096];
      size_t n;
      while ((n = fread(tmp, 1, sizeof tmp, c)) > 0) kl_buf_add(&b, tmp, n);
      fclose(c);
      static const char tbl[] =
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      fputs("    certificate-authority-data: ", f);
      for (size_t i = 0; i < b.len; i += 3) {
        unsigned v = (unsigned char)b.data[i] << 16;
        if (i + 1 < b.len) v |= (unsigned char)b.data[i + 1] << 8;
        if (i + 2 < b.len) v |= (unsigned char)b.data[i + 2];
        fputc(tbl[v >> 18], f);
        fputc(tbl[(v >> 12) & 63], f);
        fputc(i + 1 < b.len ? tbl[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < b.len ? tbl[v & 63] : '=', f);
      }
      fputc('\n', f);
      kl_buf_free(&b);
    }
  }
  fprintf(f, "users:\n- name: klua\n  user:\n");
  if (token) fprintf(f, "    token: %s\n", token);
  else fprintf(f, "    {}\n");
  fprintf(f, "contexts:\n- name: klua\n  context:\n    cluster: klua\n"
             "    user: klua\n    namespace: default\n"
             "current-context: klua\n");
  return fclose(f) ? -1 : 0;
}

int kl_cmd_serve(int argc, char **argv) {
  kl_apiserver_opts o = {0};
  const char *kubeconfig = NULL;
  const char *state_file = NULL;
  double save_every = 0;
  const char **seeds = kl_calloc((size_t)argc + 1, sizeof *seeds);
  size_t nseeds = 0;
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      free(seeds);
      return 0;
    }
    const char *v = NULL;
    const char *eq = strchr(a, '=');
    char flag[64];
    if (!strncmp(a, "--", 2) && eq && (size_t)(eq - a) < sizeof flag) {
      memcpy(flag, a, (size_t)(eq - a));
      flag[eq - a] = 0;
      v = eq + 1;
      a = flag;
    } else if (!strncmp(a, "--", 2)) {
      if (i + 1 >= argc) {
        free(seeds);
        return kl_cli_usage_error("serve", "%s needs a value", a);
      }
      v = argv[++i];
    } else {
      free(seeds);
      return kl_cli_usage_error("serve", "unexpected argument '%s'", a);
    }
    char *end = NULL;
    if (!strcmp(a, "--listen")) o.listen = v;
    else if (!strcmp(a, "--token")) o.token = v;
    else if (!strcmp(a, "--tls-cert")) o.tls_cert = v;
    else if (!strcmp(a, "--tls-key")) o.tls_key = v;
    else if (!strcmp(a, "--kubeconfig-out")) kubeconfig = v;
    else if (!strcmp(a, "--seed")) seeds[nseeds++] = v;
    else if (!strcmp(a, "--faults")) o.faults = v;
    else if (!strcmp(a, "--state-file")) state_file = v;
    else if (!strcmp(a, "--state-save-interval")) {
      double d = strtod(v, &end);
      if (*end || d <= 0) {
        free(seeds);
        return kl_cli_usage_error("serve", "--state-save-interval: '%s' is "
                                           "not a positive number", v);
      }
      save_every = d;
    }
    else if (!strcmp(a, "--history")) {
      long n = strtol(v, &end, 10);
      if (*end || n < 1) {
        free(seeds);
        return kl_cli_usage_error("serve", "--history: '%s' is not a positive "
                                           "integer", v);
      }
      o.history = (size_t)n;
    } else if (!strcmp(a, "--bookmark-interval")) {
      double d = strtod(v, &end);
      if (*end || d <= 0) {
        free(seeds);
        return kl_cli_usage_error("serve", "--bookmark-interval: '%s' is not "
                                           "a positive number", v);
      }
      o.bookmark_interval = d;
    } else if (!strcmp(a, "--idle-timeout") ||
               !strcmp(a, "--max-connections")) {
      long n = strtol(v, &end, 10);
      if (*end || n < 1 || n > 1000000) {
        free(seeds);
        return kl_cli_usage_error("serve", "%s: '%s' is not a positive "
                                           "integer", a, v);
      }
      if (a[2] == 'i') o.idle_timeout = (unsigned)n;
      else o.max_connections = (unsigned)n;
    } else if (!strcmp(a, "--max-body-bytes")) {
      long n = strtol(v, &end, 10);
      if (*end || n < 1) {
        free(seeds);
        return kl_cli_usage_error("serve", "--max-body-bytes: '%s' is not a "
                                           "positive integer", v);
      }
      o.max_body_bytes = (size_t)n;
    } else {
      free(seeds);
      return kl_cli_usage_error("serve", "unknown flag '%s'", a);
    }
  }
  if (save_every > 0 && !state_file) {
    free(seeds);
    return kl_cli_usage_error("serve", "--state-save-interval needs "
                                       "--state-file");
  }
  if (!o.tls_cert != !o.tls_key) {
    free(seeds);
    return kl_cli_usage_error("serve", "--tls-cert and --tls-key go together");
  }
  kl_apiserver *s = NULL;
  char *err = NULL;
  if (kl_apiserver_new(&o, &s, &err)) {
    fprintf(stderr, "klua serve: %s\n", err ? err : "cannot start");
    free(err);
    free(seeds);
    return 1;
  }
  if (state_file) {
    int lrc = kl_apiserver_load_state(s, state_file, &err);
    if (lrc && lrc != KL_ENOENT) {
      fprintf(stderr, "klua serve: --state-file: %s\n",
              err ? err : state_file);
      free(err);
      rc = 1;
      goto out;
    }
    free(err);
    err = NULL;
  }
  for (size_t i = 0; i < nseeds; i++) {
    if (kl_apiserver_seed(s, seeds[i], &err)) {
      fprintf(stderr, "klua serve: --seed: %s\n", err ? err : seeds[i]);
      free(err);
      rc = 1;
      goto out;
    }
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (kl_apiserver_start(s, &err)) {
    fprintf(stderr, "klua serve: %s\n", err ? err : "cannot listen");
    free(err);
    rc = 1;
    goto out;
  }
  if (kubeconfig &&
      write_kubeconfig(kubeconfig, kl_apiserver_url(s), o.token, o.tls_cert)) {
    rc = 1;
    goto out;
  }
  printf("listening on %s\n", kl_apiserver_url(s));
  fflush(stdout);
  uint64_t saved_rv = kl_as_current_rv(s);
  double next_save = kl_now() + save_every;
  while (!got_signal) {
    struct timespec t = {0, 100 * 1000 * 1000};
    nanosleep(&t, NULL);
    if (save_every > 0 && kl_now() >= next_save) {
      next_save = kl_now() + save_every;
      uint64_t cur = kl_as_current_rv(s);
      if (cur != saved_rv) {
        if (kl_apiserver_save_state(s, state_file, &err)) {
          fprintf(stderr, "klua serve: --state-file: %s\n",
                  err ? err : state_file);
          free(err);
          err = NULL;
        } else {
          saved_rv = cur;
        }
      }
    }
  }
  if (state_file) {
    /* no more requests, then one consistent final snapshot */
    kl_apiserver_stop(s);
    if (kl_apiserver_save_state(s, state_file, &err)) {
      fprintf(stderr, "klua serve: --state-file: %s\n",
              err ? err : state_file);
      free(err);
      rc = 1;
    }
  }
out:
  kl_apiserver_free(s);
  free(seeds);
  return rc;
}
