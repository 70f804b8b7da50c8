/* leader.h: leader election through a coordination.k8s.io/v1 Lease, with
 * client-go's leaderelection semantics: candidates try every retry period
 * (jittered by 1.2), take the lease when it is free (holderIdentity "") or
 * expired, the leader renews it and gives up when renewal has not succeeded
 * for the renew deadline, optimistic concurrency through resourceVersion
 * (409 = lost the race), and release on stop (holderIdentity "",
 * leaseDurationSeconds 1) so a standby takes over at once.
 * Used by `klua run --leader-elect`. Thread-safety: an elector runs on its
 * own thread; every function may be called from any thread. Callbacks run
 * on the elector's thread and must return quickly. */
#ifndef KL_LEADER_H
#define KL_LEADER_H

#include <stdbool.h>

#include "rest.h"

typedef struct kl_leader kl_leader;

typedef struct kl_leader_opts {
  kl_rest *rest;           /* borrowed; must outlive the elector */
  const char *namespace;   /* NULL: the client's namespace */
  const char *name;        /* the Lease's name (--leader-election-id) */
  const char *identity;    /* NULL: kl_leader_default_identity() */
  double lease_duration;   /* seconds, whole (Lease field); 0: 15 */
  double renew_deadline;   /* 0: 10 */
  double retry_period;     /* 0: 2 */
  bool no_release;         /* keep the lease on stop (default: release) */
  /* Called once when this process becomes the leader. */
  void (*on_started_leading)(void *ud);
  /* Called once when it stops being the leader: the lease was lost (taken
   * by another holder, or not renewed within renew_deadline) or the
   * elector was stopped. Never called if it never led. After a loss the
   * elector does not run for the lease again (controller-runtime exits). */
  void (*on_stopped_leading)(void *ud);
  /* Called when the observed holder changes (identity "" when free). */
  void (*on_new_leader)(const char *identity, void *ud);
  void *ud;
} kl_leader_opts;

/* Fills in the defaults and checks them as client-go does: name set,
 * lease_duration a whole number of seconds > renew_deadline >
 * retry_period * 1.2, retry_period > 0. Returns 0 or KL_EINVAL with a NEW
 * message in *err. */
int kl_leader_validate(kl_leader_opts *opts, char **err);

/* A NEW identity string: hostname + "_" + a random UUID. */
char *kl_leader_default_identity(void);

/* Validates opts and starts the elector thread. Returns 0 and a NEW
 * elector (kl_leader_stop, then kl_leader_free), or KL_EINVAL + *err. */
int kl_leader_start(const kl_leader_opts *opts, kl_leader **out, char **err);

/* True while this process holds the lease (as of its last renewal). */
bool kl_leader_is_leader(kl_leader *l);
/* True once leadership was lost (not by kl_leader_stop). */
bool kl_leader_lost(kl_leader *l);
/* This elector's identity (borrowed, valid until free). */
const char *kl_leader_identity(const kl_leader *l);

/* Stops the elector: aborts a pending request, releases the lease if it
 * is held (unless no_release), calls on_stopped_leading if it was leading,
 * and joins the thread. Idempotent. Do not call from a callback. */
void kl_leader_stop(kl_leader *l);
/* Stops if needed and frees. NULL-safe. */
void kl_leader_free(kl_leader *l);

/* Time helpers (exposed for tests): formats a wall-clock time (seconds
 * since the epoch) as a Kubernetes MicroTime "2026-11-24T02:40:50.323835Z"
 * into buf (>= 32 bytes); parses RFC 3339 times with or without a
 * fraction and with Z or an offset. Parse returns 0 or KL_EINVAL. */
void kl_microtime_format(double t, char *buf, size_t n);
int kl_time_parse(const char *s, double *t);

#endif
