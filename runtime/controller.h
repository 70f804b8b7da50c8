/* controller.h: the controller runtime behind `klua run` and `klua dev`.
 * Three layers: kl_vm (one LuaJIT state loaded with the user's script, owned
 * by one thread, with a reconcile budget enforced by a kl_watchdog), the C
 * backend those states read the cache and write the API through
 * (lua_runtime.c), and kl_ctl, the manager: shared informers per cache, one
 * workqueue per controller, worker and hook threads, hot reload, shutdown,
 * the event recorder, metrics and the workers liveness check.
 * Thread-safety: a kl_vm is used by the thread that created it (the
 * watchdog only arms its hook); kl_ctl functions are called from one
 * thread (the command's main thread), except kl_ctl_halt and
 * kl_ctl_check_workers (any thread); the log context is per thread. */
#ifndef KL_CONTROLLER_H
#define KL_CONTROLLER_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "discovery.h"
#include "hmap.h"
#include "informer.h"
#include "reflector.h"
#include "rest.h"
#include "store.h"

struct kl_events;

/* ---- the C backend (lua_runtime.c) ----------------------------------- */

/* What the backend of a Lua state reads and writes through. Borrowed by
 * the states: it must outlive them. */
typedef struct kl_rt_env {
  kl_rest *rest;          /* NULL: API requests fail with a message */
  kl_discovery *disc;     /* NULL when rest is NULL */
  const kl_hmap *caches;  /* cache id -> kl_store *; read-only while states
                             run (NULL: no caches) */
  const char *component;  /* source.component of Events; NULL: "klua" */
  struct kl_events *events; /* klua.event queues here (aggregated, sent by
                               the recorder's thread); NULL: events are
                               dropped with a debug line */
} kl_rt_env;

/* Pushes a NEW backend table for klua._set_backend (cache_get, cache_list,
 * cache_by_index, cache_index_values, request, event, log, now, getenv)
 * whose functions use env. */
void kl_rt_push_backend(lua_State *L, const kl_rt_env *env);

/* The log context of the calling thread: workers and the hooks thread set
 * the controller, key and reconcile id around a call into Lua; the Lua log
 * backend adds them as fields (kl_logf) to every line the script writes.
 * Borrowed strings, valid while set. */
typedef struct kl_rt_logctx {
  const char *controller; /* or NULL */
  const char *key;        /* or NULL */
  uint64_t reconcile_id;  /* 0: none */
} kl_rt_logctx;
kl_rt_logctx *kl_rt_logctx_get(void);

/* ---- budget ---------------------------------------------------------- */

/* One thread that aborts Lua calls running past their budget: it sets a
 * count hook on the late state (lua_sethook is async-safe in LuaJIT); the
 * hook raises "budget exceeded" and keeps raising until the call returns,
 * so pcall inside the script cannot swallow it. JIT-compiled loops never
 * run hooks: states that must be interruptible run with the JIT off. */
typedef struct kl_watchdog kl_watchdog;
kl_watchdog *kl_watchdog_new(void);
void kl_watchdog_free(kl_watchdog *wd); /* no vm may still be registered */

/* ---- one Lua state --------------------------------------------------- */

typedef struct kl_vm_opts {
  const char *script;     /* path of the script */
  const char *lua_dir;    /* directory of klua.lua; NULL: package.path only */
  bool jit;               /* keep the JIT on (budget not enforceable in
                             compiled loops) */
  const kl_rt_env *env;   /* backend; borrowed */
  kl_watchdog *wd;        /* budget enforcement; NULL: no budget */
  double load_budget;     /* seconds for loading the script; 0: 30 */
} kl_vm_opts;

typedef struct kl_vm kl_vm;

/* Creates a state on the calling thread: libraries, package.path with the
 * script's directory and lua_dir, klua_core preloaded, the backend
 * installed, the script run and klua._seal() called. Returns 0 and a NEW
 * *out, or KL_ELUA with a NEW message "FILE:LINE: message" (plus a
 * traceback for run-time errors) in *err. */
int kl_vm_new(const kl_vm_opts *o, kl_vm **out, char **err);
/* Closes the state (NULL-safe). */
void kl_vm_free(kl_vm *vm);
lua_State *kl_vm_state(kl_vm *vm);
/* Number of controllers the script declared. */
int kl_vm_ncontrollers(kl_vm *vm);

/* How a reconcile ended. */
typedef enum kl_outcome {
  KL_OUT_DONE = 0, /* returned nothing: forget + done */
  KL_OUT_REQUEUE,  /* klua.requeue: add_rate_limited */
  KL_OUT_AFTER,    /* requeue_after(after): forget + add_after */
  KL_OUT_ERROR,    /* raised, or returned garbage: add_rate_limited */
  KL_OUT_ABORTED,  /* ran past its budget: add_rate_limited */
} kl_outcome;

typedef struct kl_result {
  kl_outcome out;
  double after;  /* KL_OUT_AFTER */
  char *message; /* NEW (free it) for ERROR/ABORTED, else NULL */
} kl_result;

/* Calls controllers[ctl].reconcile (ctl counts from 1) with
 * { namespace, name, key } for key ("ns/name" or "name"), within budget
 * seconds (<= 0: none). The state stays usable whatever happens. */
void kl_vm_reconcile(kl_vm *vm, int ctl, const char *key, double budget,
                     kl_result *res);
/* Runs the function at the top of the stack with nargs arguments below it
 * (pops them all) within budget; like kl_vm_reconcile's error handling.
 * Returns 0 with nret results pushed, or KL_ELUA/KL_ETIMEDOUT with a NEW
 * message in *err (nothing pushed). */
int kl_vm_call(kl_vm *vm, int nargs, int nret, double budget, char **err);

/* ---- the manager ----------------------------------------------------- */

typedef struct kl_ctl_opts {
  const char *script;
  const char *lua_dir;
  kl_rest *rest;             /* borrowed; required */
  kl_discovery *disc;        /* borrowed; required */
  const char *namespace;     /* watch only this namespace (NULL: as
                                declared) */
  int workers;               /* > 0: overrides every controller's workers */
  double budget;             /* > 0: overrides reconcile_timeout */
  bool jit;
  bool reload;               /* watch the script (kl_ctl_poll) */
  double shutdown_timeout;   /* 0: 30 s */
  double sync_timeout;       /* wait for resources to be served and caches
                                to sync at start; 0: forever (still
                                interruptible) */
  const char *component;     /* Event source; NULL: "klua" */
  /* informers are taken from this factory (shared with other users of
   * it); NULL: the manager's own */
  kl_informer_factory *factory;
  /* tuning copied into every informer's reflector: page_size, watch_list,
   * watch_timeout_min_s/max_s, idle_timeout_s, backoff_*, keep_all, drop;
   * the collection fields (rest, path, selectors, ...) are ignored. Zero:
   * the reflector's defaults. */
  kl_reflector_opts reflector;
  /* the "workers" liveness check fails when a Lua call runs this many
   * seconds past its budget; 0: 10 */
  double stuck_after;
  /* polled while waiting (cache sync): true stops the wait (e.g. a
   * pending SIGINT); may be NULL */
  bool (*interrupted)(void);
} kl_ctl_opts;

typedef struct kl_ctl kl_ctl;

/* Loads the script once to check it and read its declarations. Returns 0
 * and a NEW manager, or KL_ELUA ("FILE:LINE: message") / another code with
 * a NEW message in *err. */
int kl_ctl_new(const kl_ctl_opts *o, kl_ctl **out, char **err);
/* Starts informers, waits for their caches, starts hooks and workers.
 * Returns 0 or an error with a NEW message (e.g. an unknown kind). */
int kl_ctl_start(kl_ctl *c, char **err);
/* With reload on: checks the script and its modules for changes and
 * reloads. Returns 1 when it reloaded, 0 when nothing changed, or a
 * negative code when the new version failed (logged; the old one runs). */
int kl_ctl_poll(kl_ctl *c);
/* Graceful stop: stops intake, lets running reconciles finish within the
 * shutdown timeout, stops informers. Returns 0, or KL_ETIMEDOUT when some
 * worker did not finish in time (it is abandoned). Idempotent. */
int kl_ctl_stop(kl_ctl *c);
void kl_ctl_free(kl_ctl *c);
/* Stops all Lua at once, e.g. when the leader election is lost: no
 * reconcile, hook or map call starts any more, and running ones are
 * aborted at their next Lua instruction (a call blocked in C, e.g. an API
 * request, ends when it returns to Lua). reason (borrowed; must outlive the
 * manager) is logged and is the aborted calls' error. Any thread, until
 * kl_ctl_free; kl_ctl_stop still does the teardown. */
void kl_ctl_halt(kl_ctl *c, const char *reason);

/* The liveness check "workers" (a kl_health_check_fn; ud is the kl_ctl):
 * returns 0 when no reconcile, hook or map call runs more than
 * stuck_after seconds past its budget, else KL_ETIMEDOUT with a NEW
 * *reason naming the controller, the call and the key. Any thread, until
 * kl_ctl_free. */
int kl_ctl_check_workers(void *c, char **reason);

/* Counters (for tests and logs). */
typedef struct kl_ctl_stats {
  uint64_t reconciles, errors, aborts, reloads, reload_failures;
} kl_ctl_stats;
void kl_ctl_get_stats(kl_ctl *c, kl_ctl_stats *out);

#endif
