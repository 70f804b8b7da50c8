/* http_endpoints.h: the operational HTTP endpoints of `klua run`, as
 * controller-runtime serves them: /metrics (Prometheus text) on
 * --metrics-bind-address, /healthz and /readyz (named checks) on
 * --health-probe-bind-address; one libmicrohttpd server per distinct
 * address (the same address for both serves all three paths).
 * Thread-safety: checks may be added from any thread at any time; check
 * callbacks run on the server's connection threads, concurrently. */
#ifndef KL_HTTP_ENDPOINTS_H
#define KL_HTTP_ENDPOINTS_H

#include <stdbool.h>

#include "metrics.h"

typedef struct kl_http_endpoints kl_http_endpoints;

/* A health or readiness check: returns 0 when healthy; otherwise a
 * negative KL_E* code and, optionally, a NEW one-line *reason (free()d by
 * the caller; never put secrets in it). */
typedef int (*kl_health_check_fn)(void *ud, char **reason);

typedef struct kl_http_endpoints_opts {
  /* Bind addresses: ":8080" means every interface, "127.0.0.1:8080" or
   * "[::1]:8080" one address, "host:8080" what host resolves to; port 0
   * picks a free one (kl_http_endpoints_port). NULL, "" or "0": off. */
  const char *metrics_addr;
  const char *probe_addr;
  kl_metrics *registry; /* NULL: kl_metrics_default() */
} kl_http_endpoints_opts;

/* Checks that an address is one of the forms above (without binding).
 * Returns 0, or KL_EINVAL with a NEW message naming it. */
int kl_http_addr_validate(const char *addr, char **err);
/* True when addr means "off" (NULL, "" or "0"). */
bool kl_http_addr_off(const char *addr);

/* Starts the servers (their own threads). With both addresses off it
 * returns 0 and an endpoints object that serves nothing. Returns 0 and a
 * NEW *out (kl_http_endpoints_free), or KL_EINVAL/KL_EIO with a NEW *err
 * naming the address (e.g. already in use). */
int kl_http_endpoints_start(const kl_http_endpoints_opts *opts,
                            kl_http_endpoints **out, char **err);

/* Adds a named check to /healthz or /readyz (name: [a-z0-9-]+, copied;
 * each may be queried alone at /healthz/<name>). Both lists start with a
 * "ping" check that always passes. Returns 0, KL_EINVAL (bad name) or
 * KL_EEXIST (name taken). */
int kl_http_endpoints_add_healthz(kl_http_endpoints *e, const char *name,
                                  kl_health_check_fn fn, void *ud);
int kl_http_endpoints_add_readyz(kl_http_endpoints *e, const char *name,
                                 kl_health_check_fn fn, void *ud);

/* The bound port of the metrics or probe server; 0 when off. */
int kl_http_endpoints_metrics_port(const kl_http_endpoints *e);
int kl_http_endpoints_probe_port(const kl_http_endpoints *e);

/* Stops the servers; when it returns no check is running. NULL-safe. */
void kl_http_endpoints_free(kl_http_endpoints *e);

/* Runs the checks as the handler does and renders the answer: returns the
 * HTTP status (200 or 500) and appends the body to out. which is "healthz"
 * or "readyz"; name NULL for all checks; verbose lists passing ones too.
 * 404 when name is not a check. For tests and `klua` internals. */
int kl_http_endpoints_run_checks(kl_http_endpoints *e, const char *which,
                                 const char *name, bool verbose, kl_buf *out);

#endif
