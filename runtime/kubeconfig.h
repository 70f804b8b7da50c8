/* kubeconfig.h: where the cluster is and how to authenticate, resolved as
 * kubectl does: --kubeconfig, else the KUBECONFIG list (merged), else
 * ~/.kube/config, else the in-cluster service account. Also the credential
 * source (kl_creds) that re-reads token files and runs exec plugins.
 * Used by the REST client (rest.h). Thread-safety: a kl_kubeconfig is
 * immutable after load (read it from any thread); kl_creds is thread-safe. */
#ifndef KL_KUBECONFIG_H
#define KL_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kl.h"

/* An exec credential plugin (users[].user.exec). */
typedef struct kl_exec_config {
  char *command;      /* absolute if it was a relative path with a '/' */
  char **args;        /* nargs strings */
  int nargs;
  char **env;         /* "NAME=value" strings, nenv of them */
  int nenv;
  char *api_version;  /* client.authentication.k8s.io/v1 or v1beta1 */
  bool provide_cluster_info;
  char *install_hint; /* may be NULL */
} kl_exec_config;

/* The resolved connection settings of one context. Exposed so the REST
 * client and tests can read fields; build it only with the loaders below.
 * Secret fields (token, password, key_data) must never be logged. */
typedef struct kl_kubeconfig {
  char *source;        /* file that defined the context, or "in-cluster" */
  char *context;       /* context name ("" in-cluster) */
  char *cluster_name, *user_name;
  char *server;        /* e.g. https://10.0.0.1:6443, no trailing '/' */
  char *namespace;     /* the context's namespace, "default" if unset */
  /* TLS */
  char *ca_data;       /* PEM bytes (from -data or the file), or NULL */
  size_t ca_len;
  char *ca_file;       /* where ca_data came from, for messages; or NULL */
  bool insecure;       /* insecure-skip-tls-verify */
  char *tls_server_name;
  char *proxy_url;
  /* credentials */
  char *token;         /* static bearer token or NULL (secret) */
  char *token_file;    /* absolute path, re-read when it changes, or NULL */
  char *cert_data;     /* client certificate PEM or NULL */
  size_t cert_len;
  char *key_data;      /* client key PEM or NULL (secret) */
  size_t key_len;
  char *username, *password; /* basic auth or NULL (password is secret) */
  kl_exec_config *exec; /* or NULL */
  bool in_cluster;
} kl_kubeconfig;

typedef struct kl_kubeconfig_opts {
  const char *path;    /* --kubeconfig: only this file; NULL: KUBECONFIG... */
  const char *context; /* --context override, or NULL */
  const char *namespace; /* --namespace override, or NULL */
} kl_kubeconfig_opts;

/* Loads the configuration kubectl would use: opts->path if set (it must
 * exist); else every file of $KUBECONFIG (':'-separated; missing ones are
 * skipped; the first file to define a cluster/user/context name, or
 * current-context, wins); else ~/.kube/config if it exists; else the
 * in-cluster config when KUBERNETES_SERVICE_HOST is set. Relative paths
 * resolve against the directory of the file that holds them. Certificate
 * and key files are read now, into memory.
 * Returns 0 and a NEW *out (kl_kubeconfig_free), or a negative KL_E* code
 * and a NEW message in *err (free it; it names the file and context and
 * never contains credential material). */
int kl_kubeconfig_load(const kl_kubeconfig_opts *opts, kl_kubeconfig **out,
                       char **err);

/* The in-cluster configuration: KUBERNETES_SERVICE_HOST/PORT and the
 * service account directory /var/run/secrets/kubernetes.io/serviceaccount
 * (env KLUA_SERVICEACCOUNT_DIR overrides it, for tests only). Same
 * returns as kl_kubeconfig_load; KL_ENOENT when not running in a cluster. */
int kl_kubeconfig_in_cluster(kl_kubeconfig **out, char **err);

/* Frees a configuration (NULL-safe), wiping secrets first. */
void kl_kubeconfig_free(kl_kubeconfig *kc);

/* Credentials for one request, a snapshot owned by the caller: release
 * with kl_cred_clear (which wipes it). Fields are NULL when unused. */
typedef struct kl_cred {
  char *token;                 /* bearer token */
  char *cert_data, *key_data;  /* client certificate + key PEM */
  size_t cert_len, key_len;
  char *username, *password;
  uint64_t generation;         /* pass to kl_creds_invalidate on 401 */
} kl_cred;
void kl_cred_clear(kl_cred *c);

/* The live credential source of a configuration: static values, a token
 * file re-read when its mtime/size change (checked at most every 2 s, or
 * at once after kl_creds_invalidate), or an exec plugin whose result is
 * cached until status.expirationTimestamp. Thread-safe. */
typedef struct kl_creds kl_creds;

/* Returns a NEW source holding copies of what it needs from kc. */
kl_creds *kl_creds_new(const kl_kubeconfig *kc);
void kl_creds_free(kl_creds *c);

/* Fills *out with the current credentials (running the exec plugin or
 * reading the token file if needed). Returns 0, or a negative KL_E* code
 * and a NEW secret-free message in *err (free it). */
int kl_creds_get(kl_creds *c, kl_cred *out, char **err);

/* Called after a 401 with credentials of `generation`: drops the cached
 * exec result and forces the token file to be re-read on the next get.
 * Returns true when that may give different credentials (an exec plugin or
 * a token file), false for static ones (do not retry then). Only the first
 * call per generation takes effect, so concurrent 401s run one refresh. */
bool kl_creds_invalidate(kl_creds *c, uint64_t generation);

#endif
