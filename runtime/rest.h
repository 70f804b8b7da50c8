/* rest.h: the HTTP client to the Kubernetes API server (libcurl), built
 * from a kubeconfig: TLS, credentials (refreshed once on 401), a shared
 * token-bucket rate limit, Retry-After handling, Status errors, and a
 * streaming mode for watches that another thread can stop promptly.
 * Used by discovery, the reflector and the Lua write API.
 * Thread-safety: one kl_rest serves requests from any number of threads. */
#ifndef KL_REST_H
#define KL_REST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "kl.h"
#include "kubeconfig.h"
#include "status.h"

/* A token bucket: `burst` tokens, refilled at `qps` per second. Exposed so
 * it can be embedded and its accounting tested without clocks. */
typedef struct kl_ratelimit {
  pthread_mutex_t mu;
  double qps;    /* <= 0: unlimited */
  double burst;
  double tokens; /* may go negative: reserved by waiting callers */
  double last;   /* time of the last refill */
} kl_ratelimit;

/* Starts full (burst tokens) at time `now` (seconds, any monotonic base). */
void kl_ratelimit_init(kl_ratelimit *rl, double qps, int burst, double now);
void kl_ratelimit_destroy(kl_ratelimit *rl);
/* Takes one token at time `now` and returns how many seconds the caller
 * must wait before using it (0 when one was available). Thread-safe. */
double kl_ratelimit_reserve(kl_ratelimit *rl, double now);
/* Tokens available at `now` (after refill; negative when overbooked). */
double kl_ratelimit_tokens(kl_ratelimit *rl, double now);

typedef struct kl_rest_opts {
  double qps;            /* 0: 50 requests/s; negative: unlimited */
  int burst;             /* 0: 100 */
  double timeout_s;      /* default request timeout; 0: 60 s */
  int max_retries;       /* retries after 429/5xx with Retry-After; 0: 5;
                            negative: none */
  double max_retry_wait_s; /* cap on one Retry-After wait; 0: 30 s */
  const char *user_agent;  /* NULL: "klua/VERSION (linux/ARCH)" */
} kl_rest_opts;

typedef struct kl_rest kl_rest;

/* Builds a client for kc (copied; kc may be freed afterwards). opts may be
 * NULL. Returns 0 and a NEW *out (kl_rest_free), or a negative KL_E* code
 * and a NEW message in *err (free it). */
int kl_rest_new(const kl_kubeconfig *kc, const kl_rest_opts *opts,
                kl_rest **out, char **err);
/* Frees the client; no request may be running. NULL-safe. */
void kl_rest_free(kl_rest *c);

/* Borrowed, valid for the client's life: the server URL and the default
 * namespace of the kubeconfig context. */
const char *kl_rest_server(const kl_rest *c);
const char *kl_rest_namespace(const kl_rest *c);
/* The client's rate limiter (borrowed), e.g. to inspect its accounting. */
kl_ratelimit *kl_rest_ratelimit(kl_rest *c);

/* Streaming callback: receives the body of a 2xx response as it arrives
 * (chunk boundaries are arbitrary). Return 0 to go on, or a negative KL_E*
 * code to abort the request (kl_rest_do then returns that code). */
typedef int (*kl_rest_data_cb)(const char *p, size_t n, void *ud);

typedef struct kl_rest_req {
  const char *method;       /* NULL: GET */
  const char *path;         /* already URL-encoded, e.g. /api/v1/pods */
  const char *query;        /* encoded, without '?' (kl_rest_query_add); or
                               NULL */
  const char *body;         /* or NULL */
  size_t body_len;
  const char *content_type; /* NULL: application/json when there is a body */
  const char *accept;       /* NULL: application/json */
  double timeout_s;         /* 0: the client's default; negative: none */
  /* Streaming: with on_data set, a 2xx body goes to on_data and resp->body
   * stays empty (error bodies are still buffered and decoded). */
  kl_rest_data_cb on_data;
  /* Streaming: called after each round of reading, once every byte libcurl
   * had ready went to on_data and before waiting for more (one round may
   * hold many HTTP chunks, e.g. many watch events; a slow stream gives a
   * round per chunk). A consumer that gathers work across on_data calls
   * hands it on here. Returns 0, or a code that aborts like on_data's.
   * May be NULL. */
  int (*on_flush)(void *ud);
  void *ud;
  /* Set *stop non-zero from any thread to abort: the call returns
   * KL_ECLOSED within about 100 ms, idle connection or not. May be NULL. */
  const atomic_int *stop;
  int idle_timeout_s;       /* fail with KL_ETIMEDOUT when no byte arrives
                               for this long; 0: none */
  bool no_retry;            /* do not retry on 429/5xx + Retry-After */
} kl_rest_req;

typedef struct kl_rest_resp {
  int status;              /* HTTP status, 0 when there was no response */
  char content_type[128];  /* "" when absent */
  int retry_after_s;       /* Retry-After in seconds, -1 when absent */
  kl_buf body;             /* the (decompressed) body unless streamed */
} kl_rest_resp;

/* Frees the body; the struct can be reused. */
void kl_rest_resp_free(kl_rest_resp *r);

/* Why a request failed. status is filled (kl_status_from_http) for HTTP
 * errors; message always (for any failure) and never holds credentials. */
typedef struct kl_rest_error {
  int http_status;   /* 0: no HTTP answer (transport, timeout, stopped) */
  kl_status status;  /* decoded Status; zeroed when http_status is 0 */
  int retry_after_s; /* -1 when the server gave none */
  char *message;     /* NEW one line: "GET URL: 404 NotFound: ..." */
} kl_rest_error;

/* Frees the strings and zeroes *e (NULL-safe, idempotent). */
void kl_rest_error_free(kl_rest_error *e);

/* Performs one request (with rate limiting, credential refresh on 401 and
 * Retry-After retries). *resp is overwritten (free with kl_rest_resp_free
 * in every case); *err may be NULL, else it is overwritten and must be
 * freed with kl_rest_error_free. Returns 0 for a 2xx answer; KL_EHTTP for
 * other statuses (KL_EGONE for 410), with resp->status/body set;
 * KL_ETIMEDOUT; KL_ECLOSED when req->stop was set; KL_EIO for transport and
 * TLS failures; or the code on_data returned. Callable from any thread. */
int kl_rest_do(kl_rest *c, const kl_rest_req *req, kl_rest_resp *resp,
               kl_rest_error *err);

/* Appends key=value to a query string, '&'-separated, both percent-encoded
 * (RFC 3986 unreserved characters are kept). */
void kl_rest_query_add(kl_buf *q, const char *key, const char *value);
/* Appends "/" and the percent-encoded path segment. */
void kl_rest_path_add(kl_buf *path, const char *segment);

#endif
