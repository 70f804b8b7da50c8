/* run_cmd.c: `klua run SCRIPT` (run a controller script against a cluster
 * until SIGINT/SIGTERM) and `klua dev SCRIPT` (the same against an
 * in-process local API server, with hot reload). See docs/running.md.
 * Called from the main thread; SIGINT/SIGTERM are blocked in every thread
 * and taken with sigtimedwait by the main loop; SIGPIPE has a no-op
 * handler (writes to closed pipes fail with EPIPE). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apiserver.h"
#include "cli.h"
#include "controller.h"
#include "discovery.h"
#include "http_endpoints.h"
#include "kl.h"
#include "kubeconfig.h"
#include "leader.h"
#include "log_format.h"
#include "rest.h"

static const char run_usage[] =
    "usage: klua run SCRIPT.lua [options]\n"
    "\n"
    "Runs the controllers SCRIPT.lua declares until SIGINT or SIGTERM.\n"
    "\n"
    "options:\n"
    "  --kubeconfig FILE        kubeconfig to use (default: $KUBECONFIG,\n"
    "                           ~/.kube/config, then in-cluster)\n"
    "  --context NAME           kubeconfig context (default: current)\n"
    "  --namespace NS, -n NS    watch only namespace NS (caches declared\n"
    "                           without a namespace)\n"
    "  --workers N              workers per controller (overrides the\n"
    "                           script's `workers`)\n"
    "  --budget SECONDS         abort a reconcile that runs longer (overrides\n"
    "                           the script's reconcile_timeout, default 30)\n"
    "  --shutdown-timeout SECONDS\n"
    "                           time running reconciles get at shutdown\n"
    "                           (default 30)\n"
    "  --reload                 reload the script when it or a module it\n"
    "                           required from its directory changes\n"
    "  --sync-timeout SECONDS   give up (exit 1) when the watched resources\n"
    "                           are not served or their caches not synced\n"
    "                           within SECONDS (default 0: wait forever)\n"
    "  --watch-list             fill caches with streaming lists\n"
    "                           (sendInitialEvents; falls back to paged\n"
    "                           lists when the server refuses)\n"
    "  --jit                    keep LuaJIT's JIT compiler on in workers\n"
    "                           (faster, but a loop compiled by the JIT cannot\n"
    "                           be stopped by the budget)\n"
    "  --log-format text|json   log line format (default text)\n"
    "  --leader-elect           run only while holding a Lease (standbys\n"
    "                           wait; see docs/production.md)\n"
    "  --leader-election-id NAME\n"
    "                           the Lease's name (default: the script's\n"
    "                           file name without .lua)\n"
    "  --leader-election-namespace NS\n"
    "                           the Lease's namespace (default: the\n"
    "                           kubeconfig's or in-cluster namespace)\n"
    "  --metrics-bind-address ADDR\n"
    "                           where /metrics is served, e.g. :8080\n"
    "                           (default 0: off; port 0 picks a free\n"
    "                           port, named in a log line)\n"
    "  --health-probe-bind-address ADDR\n"
    "                           where /healthz and /readyz are served,\n"
    "                           e.g. :8081 (default 0: off)\n"
    "  -v LEVEL                 verbosity: 0 info (default), 1 debug, 2 trace\n"
    "  --help                   print this help\n";

static const char dev_usage[] =
    "usage: klua dev SCRIPT.lua [options]\n"
    "\n"
    "Starts a local Kubernetes API server in this process, writes a\n"
    "kubeconfig for it, and runs SCRIPT.lua against it with hot reload on.\n"
    "\n"
    "options:\n"
    "  --seed PATH              create the objects of a manifest file or\n"
    "                           directory first (repeatable)\n"
    "  --listen ADDR            host:port of the API server (default\n"
    "                           127.0.0.1:0: a free port)\n"
    "  --kubeconfig-out FILE    where to write the kubeconfig (default: a\n"
    "                           file in a new temporary directory)\n"
    "  --namespace NS, -n NS    as for klua run\n"
    "  --workers N              as for klua run\n"
    "  --budget SECONDS         as for klua run\n"
    "  --shutdown-timeout SECONDS\n"
    "                           as for klua run\n"
    "  --jit                    as for klua run\n"
    "  --sync-timeout SECONDS   as for klua run\n"
    "  --watch-list             as for klua run\n"
    "  --log-format text|json   as for klua run\n"
    "  --metrics-bind-address ADDR, --health-probe-bind-address ADDR\n"
    "                           as for klua run\n"
    "  -v LEVEL                 as for klua run\n"
    "  --help                   print this help\n";

typedef struct run_args {
  const char *script;
  const char *kubeconfig, *context, *namespace;
  int workers;
  double budget, shutdown_timeout, sync_timeout;
  bool reload, jit, watch_list;
  int log_format;
  int verbosity;
  /* dev */
  const char **seeds;
  int nseeds;
  const char *listen, *kubeconfig_out;
  /* production (docs/production.md) */
  bool leader_elect;
  const char *le_id, *le_ns, *metrics_addr, *probe_addr;
} run_args;

static int parse_num(const char *sub, const char *flag, const char *v,
                     double min, double *out) {
  char *end = NULL;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || end == v || *end || d < min || d != d)
    return kl_cli_usage_error(sub, "%s: bad value '%s'", flag, v);
  *out = d;
  return 0;
}

/* Parses argv (argv[0] is the subcommand). Returns -1 to go on, or an exit
 * status. */
static int parse_args(int argc, char **argv, bool dev, run_args *a) {
  const char *sub = dev ? "dev" : "run";
  memset(a, 0, sizeof *a);
  a->verbosity = 0;
  a->seeds = kl_calloc((size_t)argc + 1, sizeof *a->seeds);
  for (int i = 1; i < argc; i++) {
    char *arg = argv[i];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      fputs(dev ? dev_usage : run_usage, stdout);
      return 0;
    }
    if (arg[0] != '-' || !strcmp(arg, "-")) {
      if (a->script)
        return kl_cli_usage_error(sub, "one script only (got '%s' and '%s')",
                                  a->script, arg);
      a->script = arg;
      continue;
    }
    /* --flag=value or --flag value */
    char name[64];
    const char *val = NULL;
    const char *eq = strchr(arg, '=');
    if (eq && eq - arg < (long)sizeof name) {
      memcpy(name, arg, (size_t)(eq - arg));
      name[eq - arg] = 0;
      val = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", arg);
    }
    bool is_bool = !strcmp(name, "--reload") || !strcmp(name, "--jit") ||
                   !strcmp(name, "--leader-elect") ||
                   !strcmp(name, "--watch-list");
    if (is_bool) {
      if (val) return kl_cli_usage_error(sub, "%s takes no value", name);
      if (!strcmp(name, "--leader-elect")) {
        if (dev) return kl_cli_usage_error(sub, "unknown flag '%s'", name);
        a->leader_elect = true;
      } else if (!strcmp(name, "--reload")) {
        if (dev) return kl_cli_usage_error(sub, "unknown flag '%s'", name);
        a->reload = true;
      } else if (!strcmp(name, "--watch-list")) {
        a->watch_list = true;
      } else {
        a->jit = true;
      }
      continue;
    }
    static const char *const run_flags[] = {
        "--kubeconfig", "--context", "--namespace", "-n", "--workers",
        "--budget", "--shutdown-timeout", "--sync-timeout", "--log-format",
        "-v", "--v", "--leader-election-id", "--leader-election-namespace",
        "--metrics-bind-address", "--health-probe-bind-address", NULL};
    static const char *const dev_flags[] = {
        "--seed", "--listen", "--kubeconfig-out", "--namespace", "-n",
        "--workers", "--budget", "--shutdown-timeout", "--sync-timeout",
        "--log-format", "-v", "--v", "--metrics-bind-address",
        "--health-probe-bind-address", NULL};
    bool known = false;
    for (const char *const *f = dev ? dev_flags : run_flags; *f; f++)
      if (!strcmp(*f, name)) known = true;
    if (!known) return kl_cli_usage_error(sub, "unknown flag '%s'", name);
    if (!val) {
      if (i + 1 >= argc)
        return kl_cli_usage_error(sub, "%s needs a value", name);
      val = argv[++i];
    }
    double d;
    int rc;
    if (!strcmp(name, "--kubeconfig")) a->kubeconfig = val;
    else if (!strcmp(name, "--context")) a->context = val;
    else if (!strcmp(name, "--namespace") || !strcmp(name, "-n"))
      a->namespace = val;
    else if (!strcmp(name, "--seed")) a->seeds[a->nseeds++] = val;
    else if (!strcmp(name, "--listen")) a->listen = val;
    else if (!strcmp(name, "--kubeconfig-out")) a->kubeconfig_out = val;
    else if (!strcmp(name, "--leader-election-id")) a->le_id = val;
    else if (!strcmp(name, "--leader-election-namespace")) a->le_ns = val;
    else if (!strcmp(name, "--metrics-bind-address") ||
             !strcmp(name, "--health-probe-bind-address")) {
      char *aerr = NULL;
      if (kl_http_addr_validate(val, &aerr) != 0) {
        rc = kl_cli_usage_error(sub, "%s: %s", name, aerr);
        free(aerr);
        return rc;
      }
      if (name[2] == 'm') a->metrics_addr = val;
      else a->probe_addr = val;
    }
    else if (!strcmp(name, "--log-format")) {
      if (kl_log_format_parse(val, &a->log_format) != 0)
        return kl_cli_usage_error(sub, "--log-format must be text or json, "
                                  "got '%s'", val);
    } else if (!strcmp(name, "--workers")) {
      if ((rc = parse_num(sub, name, val, 1, &d))) return rc;
      if (d != (int)d || d > 1024)
        return kl_cli_usage_error(sub, "--workers: bad value '%s'", val);
      a->workers = (int)d;
    } else if (!strcmp(name, "--budget")) {
      if ((rc = parse_num(sub, name, val, 0, &d))) return rc;
      if (d <= 0) return kl_cli_usage_error(sub, "--budget must be > 0");
      a->budget = d;
    } else if (!strcmp(name, "--shutdown-timeout")) {
      if ((rc = parse_num(sub, name, val, 0, &d))) return rc;
      if (d <= 0)
        return kl_cli_usage_error(sub, "--shutdown-timeout must be > 0");
      a->shutdown_timeout = d;
    } else if (!strcmp(name, "--sync-timeout")) {
      if ((rc = parse_num(sub, name, val, 0, &d))) return rc;
      a->sync_timeout = d;
    } else { /* -v */
      if ((rc = parse_num(sub, name, val, 0, &d))) return rc;
      a->verbosity = (int)d;
    }
  }
  if (!a->script) return kl_cli_usage_error(sub, "no script given");
  if (dev) a->reload = true;
  if (!a->metrics_addr) a->metrics_addr = "0";
  if (!a->probe_addr) a->probe_addr = "0";
  return -1;
}

/* The directory of klua.lua: $KLUA_LUA_DIR, else next to the binary
 * (build/klua -> ../lua), else the install prefix (bin/klua ->
 * ../share/lua/5.1). NEW string or NULL (package.path only). */
static char *find_lua_dir(void) {
  const char *env = getenv("KLUA_LUA_DIR");
  if (env && *env) return kl_strdup(env);
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return NULL;
  exe[n] = 0;
  char *slash = strrchr(exe, '/');
  if (!slash) return NULL;
  *slash = 0;
  static const char *const rel[] = {"../lua", "../../lua", "../../../lua",
                                    "../share/lua/5.1", NULL};
  for (const char *const *r = rel; *r; r++) {
    char *dir = kl_sprintf("%s/%s", exe, *r);
    char *probe = kl_sprintf("%s/klua.lua", dir);
    struct stat st;
    bool ok = stat(probe, &st) == 0;
    free(probe);
    if (ok) {
      char real[PATH_MAX];
      if (realpath(dir, real)) {
        free(dir);
        return kl_strdup(real);
      }
      return dir;
    }
    free(dir);
  }
  return NULL;
}

static sigset_t stop_signals;

static void on_sigpipe(int sig) { (void)sig; } /* async-signal-safe: empty */
static kl_leader *the_leader; /* set while leader election runs */

/* Ends the manager's waits (resources to be served, cache sync): a stop
 * signal is pending, or the Lease was lost (nothing may go on then). */
static bool interrupted(void) {
  sigset_t pend;
  sigpending(&pend);
  if (sigismember(&pend, SIGINT) || sigismember(&pend, SIGTERM)) return true;
  return the_leader && kl_leader_lost(the_leader);
}

static int write_dev_kubeconfig(const char *path, const char *url) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f,
          "apiVersion: v1\n"
          "kind: Config\n"
          "clusters:\n"
          "- name: klua-dev\n"
          "  cluster:\n"
          "    server: %s\n"
          "contexts:\n"
          "- name: klua-dev\n"
          "  context:\n"
          "    cluster: klua-dev\n"
          "    user: klua-dev\n"
          "    namespace: default\n"
          "current-context: klua-dev\n"
          "users:\n"
          "- name: klua-dev\n"
          "  user: {}\n",
          url);
  return fclose(f) == 0 ? 0 : -1;
}

/* ---- leader election and probes (docs/production.md) ----------------- */

static atomic_int leading_started, running, tearing_down;
/* the elector, for the readiness check (HTTP threads); set once it runs */
static _Atomic(kl_leader *) probe_leader;

static void on_started_leading(void *ud) {
  (void)ud;
  atomic_store(&leading_started, 1);
}

/* On the elector's thread. A loss (not the release at teardown) stops all
 * Lua at once, as controller-runtime skips its graceful shutdown then;
 * the main loop notices the loss and tears down. ud: the manager. */
static void on_stopped_leading(void *ud) {
  if (!atomic_load(&tearing_down)) kl_ctl_halt(ud, "leader election lost");
}

/* readyz "informer-sync": kl_ctl_start returned (it waits for every cache).
 * A standby (leader election on, not leading) is ready: it has nothing to
 * sync, and a rollout must not wait for it. */
static int ready_check(void *ud, char **reason) {
  (void)ud;
  kl_leader *le = atomic_load(&probe_leader);
  if (atomic_load(&running)) return 0;
  if (le && !kl_leader_is_leader(le)) return 0;
  *reason = kl_strdup("informers have not synced yet");
  return KL_EAGAIN;
}

/* The default --leader-election-id: the script's file name without .lua,
 * lower-cased, other characters as '-' (NEW). */
static char *default_lease_id(const char *script) {
  const char *b = strrchr(script, '/');
  b = b ? b + 1 : script;
  size_t n = strlen(b);
  if (n > 4 && !strcmp(b + n - 4, ".lua")) n -= 4;
  char *id = kl_strndup(b, n);
  for (char *p = id; *p; p++) {
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');
    else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
               *p == '-' || *p == '.'))
      *p = '-';
  }
  return id;
}

/* Logs where a server listens, with the port it got (port 0 picks one). */
static void log_listening(const char *what, const char *paths,
                          const char *addr, int port) {
  if (port <= 0) return;
  const char *colon = strrchr(addr, ':');
  int hostlen = colon ? (int)(colon - addr) : 0;
  kl_log(KL_LOG_INFO, "run", "serving %s on %.*s:%d (%s)", what, hostlen,
         addr, port, paths);
}

static int run_main(run_args *a, bool dev) {
  const char *sub = dev ? "dev" : "run";
  kl_log_use_format(a->log_format, NULL);
  kl_log_set_level(a->verbosity <= 0   ? KL_LOG_INFO
                   : a->verbosity == 1 ? KL_LOG_DEBUG
                                       : KL_LOG_TRACE);
  struct stat st;
  errno = 0;
  if (stat(a->script, &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "klua %s: cannot open script %s: %s\n", sub, a->script,
            errno ? strerror(errno) : "not a regular file");
    return 1;
  }
  /* A write to a closed pipe or socket (a script's io.popen, a client gone)
   * must be an EPIPE error, not a SIGPIPE ending every controller. A no-op
   * handler rather than SIG_IGN: commands the script starts get the
   * default action back at exec. */
  struct sigaction sp;
  memset(&sp, 0, sizeof sp);
  sp.sa_handler = on_sigpipe;
  sp.sa_flags = SA_RESTART;
  sigemptyset(&sp.sa_mask);
  sigaction(SIGPIPE, &sp, NULL);
  /* every thread created from now on inherits the blocked signals */
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  int status = 1;
  kl_apiserver *srv = NULL;
  char *tmpdir = NULL, *kcpath = NULL;
  kl_kubeconfig *kc = NULL;
  kl_rest *rest = NULL;
  kl_discovery *disc = NULL;
  kl_ctl *ctl = NULL;
  kl_http_endpoints *probes = NULL;
  kl_leader *le = NULL;
  char *lease_id = NULL;
  char *lua_dir = find_lua_dir();
  char *err = NULL;

  if (dev) {
    kl_apiserver_opts so = {.listen = a->listen ? a->listen : "127.0.0.1:0"};
    if (kl_apiserver_new(&so, &srv, &err) != 0) goto fail;
    for (int i = 0; i < a->nseeds; i++)
      if (kl_apiserver_seed(srv, a->seeds[i], &err) != 0) goto fail;
    if (kl_apiserver_start(srv, &err) != 0) goto fail;
    if (a->kubeconfig_out) {
      kcpath = kl_strdup(a->kubeconfig_out);
    } else {
      const char *t = getenv("TMPDIR");
      char tmpl[PATH_MAX];
      snprintf(tmpl, sizeof tmpl, "%s/klua-dev-XXXXXX", t && *t ? t : "/tmp");
      if (!mkdtemp(tmpl)) {
        err = kl_sprintf("cannot create a temporary directory: %s",
                         strerror(errno));
        goto fail;
      }
      tmpdir = kl_strdup(tmpl);
      kcpath = kl_sprintf("%s/kubeconfig", tmpdir);
    }
    if (write_dev_kubeconfig(kcpath, kl_apiserver_url(srv)) != 0) {
      err = kl_sprintf("cannot write %s: %s", kcpath, strerror(errno));
      goto fail;
    }
    printf("klua dev: API server listening on %s\n"
           "klua dev: kubeconfig written to %s\n"
           "klua dev: try: kubectl --kubeconfig %s get all\n",
           kl_apiserver_url(srv), kcpath, kcpath);
    fflush(stdout);
    a->kubeconfig = kcpath;
    a->context = NULL;
  }

  kl_kubeconfig_opts ko = {.path = a->kubeconfig, .context = a->context,
                           .namespace = NULL};
  if (kl_kubeconfig_load(&ko, &kc, &err) != 0) goto fail;
  if (kl_rest_new(kc, NULL, &rest, &err) != 0) goto fail;
  disc = kl_discovery_new(rest, 0);

  kl_ctl_opts co = {0};
  co.script = a->script;
  co.lua_dir = lua_dir;
  co.rest = rest;
  co.disc = disc;
  co.namespace = a->namespace;
  co.workers = a->workers;
  co.budget = a->budget;
  co.jit = a->jit;
  co.reload = a->reload;
  co.shutdown_timeout = a->shutdown_timeout;
  co.sync_timeout = a->sync_timeout;
  co.reflector.watch_list = a->watch_list;
  co.interrupted = interrupted;
  int rc = kl_ctl_new(&co, &ctl, &err);
  if (rc != 0) {
    fprintf(stderr, "klua %s: cannot load %s:\n%s\n", sub, a->script,
            err ? err : "?");
    free(err);
    err = NULL;
    goto out;
  }
  kl_http_endpoints_opts ho = {.metrics_addr = a->metrics_addr,
                               .probe_addr = a->probe_addr};
  if (kl_http_endpoints_start(&ho, &probes, &err) != 0) goto fail;
  log_listening("metrics", "/metrics", a->metrics_addr,
                kl_http_endpoints_metrics_port(probes));
  log_listening("health probes", "/healthz, /readyz", a->probe_addr,
                kl_http_endpoints_probe_port(probes));
  kl_http_endpoints_add_readyz(probes, "informer-sync", ready_check, NULL);
  kl_http_endpoints_add_healthz(probes, "workers", kl_ctl_check_workers, ctl);
  if (a->leader_elect) {
    lease_id = a->le_id ? kl_strdup(a->le_id) : default_lease_id(a->script);
    kl_leader_opts lo = {.rest = rest, .namespace = a->le_ns,
                         .name = lease_id,
                         .on_started_leading = on_started_leading,
                         .on_stopped_leading = on_stopped_leading,
                         .ud = ctl};
    if (kl_leader_start(&lo, &le, &err) != 0) goto fail;
    the_leader = le;
    atomic_store(&probe_leader, le);
    /* standby until the lease is ours (or a stop signal) */
    bool stop = false;
    while (!atomic_load(&leading_started) && !stop) {
      struct timespec ts = {0, 200 * 1000000};
      int sig = sigtimedwait(&stop_signals, NULL, &ts);
      stop = sig == SIGINT || sig == SIGTERM;
    }
    if (stop) {
      kl_log(KL_LOG_INFO, "run", "stopped while waiting for the lease");
      status = 0;
      goto out;
    }
  }
  if (kl_ctl_start(ctl, &err) != 0) {
    sigset_t pend;
    sigpending(&pend);
    if (!(le && kl_leader_lost(le)) &&
        (sigismember(&pend, SIGINT) || sigismember(&pend, SIGTERM))) {
      /* a stop signal during the wait for resources or caches: a clean
       * shutdown, nothing ran yet */
      kl_log(KL_LOG_INFO, "run", "stopped before starting: %s", err);
      free(err);
      err = NULL;
      status = 0;
      goto out;
    }
    goto fail;
  }
  atomic_store(&running, 1);
  if (a->reload)
    kl_log(KL_LOG_INFO, "run", "watching %s for changes", a->script);

  for (;;) {
    struct timespec ts = {0, 500 * 1000000};
    int sig = sigtimedwait(&stop_signals, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      kl_log(KL_LOG_INFO, "run", "received %s, shutting down",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (le && kl_leader_lost(le)) {
      /* as controller-runtime: nothing may reconcile after a loss */
      kl_log(KL_LOG_ERROR, "run", "leader election lost; stopping");
      kl_ctl_stop(ctl);
      status = 1;
      goto out;
    }
    kl_ctl_poll(ctl);
  }
  status = kl_ctl_stop(ctl) == 0 ? 0 : 1;
  kl_log(KL_LOG_INFO, "run", "stopped");
  goto out;

fail:
  fprintf(stderr, "klua %s: %s\n", sub, err ? err : "failed");
  free(err);
  status = 1;
out:
  atomic_store(&running, 0);
  atomic_store(&tearing_down, 1);
  double t0 = kl_now();
  if (ctl) kl_ctl_stop(ctl); /* workers end before the lease is released */
  /* the probes go first: their checks read the elector and the manager */
  kl_http_endpoints_free(probes);
  atomic_store(&probe_leader, NULL);
  the_leader = NULL;
  kl_leader_free(le);        /* releases the lease (ReleaseOnCancel) */
  free(lease_id);
  double t1 = kl_now();
  kl_ctl_free(ctl);          /* informers, queues, the event recorder */
  double t2 = kl_now();
  kl_discovery_free(disc);
  kl_rest_free(rest);
  kl_kubeconfig_free(kc);
  kl_apiserver_free(srv);
  kl_log(KL_LOG_DEBUG, "run", "teardown took %.3f s (lease and probes "
         "%.3f s, controllers %.3f s, the rest %.3f s)", kl_now() - t0,
         t1 - t0, t2 - t1, kl_now() - t2);
  if (tmpdir) {
    if (kcpath) unlink(kcpath);
    rmdir(tmpdir);
  }
  free(tmpdir);
  free(kcpath);
  free(lua_dir);
  return status;
}

static int cmd(int argc, char **argv, bool dev) {
  run_args a;
  int rc = parse_args(argc, argv, dev, &a);
  if (rc < 0) rc = run_main(&a, dev);
  free(a.seeds);
  return rc;
}

int kl_cmd_run(int argc, char **argv) { return cmd(argc, argv, false); }
int kl_cmd_dev(int argc, char **argv) { return cmd(argc, argv, true); }
