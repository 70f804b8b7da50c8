/* test_http_endpoints.c: /metrics, /healthz and /readyz over real HTTP
 * (libcurl): exposition content type, check aggregation, failing checks
 * (500 naming the check), single checks, address forms and off switches. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>

#include "ctest.h"
#include "http_endpoints.h"

typedef struct resp {
  long code;
  kl_buf body;
  char ctype[128];
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  kl_buf_add(ud, p, sz * n);
  return sz * n;
}

static int get(const char *host, int port, const char *path, resp *r,
               const char *method) {
  memset(r, 0, sizeof *r);
  char url[256];
  snprintf(url, sizeof url, "http://%s:%d%s", host, port, path);
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  if (method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
  char *ct = NULL;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
  if (ct) snprintf(r->ctype, sizeof r->ctype, "%s", ct);
  curl_easy_cleanup(c);
  kl_buf_addc(&r->body, 0);
  r->body.len--;
  return rc == CURLE_OK ? 0 : -1;
}

static atomic_int synced;
static int informers_synced(void *ud, char **reason) {
  (void)ud;
  if (atomic_load(&synced)) return 0;
  *reason = kl_strdup("informer v1/configmaps not synced");
  return KL_EAGAIN;
}
static int workers_ok(void *ud, char **reason) {
  (void)ud;
  (void)reason;
  return 0;
}

TEST(metrics_and_probes_on_separate_servers) {
  kl_metrics *reg = kl_metrics_new();
  kl_metric *c = NULL;
  kl_metrics_counter(reg, "t_total", "Things.", NULL, &c, NULL);
  kl_counter_add(kl_metric_with(c, NULL, 0), 3);
  kl_http_endpoints_opts o = {.metrics_addr = "127.0.0.1:0",
                              .probe_addr = "127.0.0.1:0",
                              .registry = reg};
  kl_http_endpoints *e = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_http_endpoints_start(&o, &e, &err), 0);
  free(err);
  int mp = kl_http_endpoints_metrics_port(e),
      pp = kl_http_endpoints_probe_port(e);
  CHECK(mp > 0 && pp > 0 && mp != pp);
  resp r;
  CHECK_EQ_INT(get("127.0.0.1", mp, "/metrics", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  CHECK_EQ_STR(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
  CHECK_EQ_STR(r.body.data,
               "# HELP t_total Things.\n# TYPE t_total counter\nt_total 3\n");
  kl_buf_free(&r.body);
  /* each server serves only its own paths */
  CHECK_EQ_INT(get("127.0.0.1", mp, "/healthz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 404);
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", pp, "/metrics", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 404);
  kl_buf_free(&r.body);

  /* only ping: ok */
  CHECK_EQ_INT(get("127.0.0.1", pp, "/healthz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  CHECK_EQ_STR(r.body.data, "ok");
  kl_buf_free(&r.body);

  CHECK_EQ_INT(kl_http_endpoints_add_readyz(e, "informer-sync",
                                            informers_synced, NULL),
               0);
  CHECK_EQ_INT(kl_http_endpoints_add_healthz(e, "workers", workers_ok, NULL),
               0);
  CHECK_EQ_INT(kl_http_endpoints_add_readyz(e, "informer-sync",
                                            informers_synced, NULL),
               KL_EEXIST);
  CHECK_EQ_INT(kl_http_endpoints_add_readyz(e, "Bad Name", workers_ok, NULL),
               KL_EINVAL);

  CHECK_EQ_INT(get("127.0.0.1", pp, "/readyz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 500);
  CHECK_EQ_STR(r.body.data, "[+]ping ok\n"
                            "[-]informer-sync failed: reason withheld\n"
                            "readyz check failed\n");
  kl_buf_free(&r.body);
  /* one check alone shows its reason */
  CHECK_EQ_INT(get("127.0.0.1", pp, "/readyz/informer-sync", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 500);
  CHECK_EQ_STR(r.body.data, "internal server error: informer v1/configmaps "
                            "not synced\n");
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", pp, "/readyz/nope", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 404);
  kl_buf_free(&r.body);
  /* liveness is independent of readiness */
  CHECK_EQ_INT(get("127.0.0.1", pp, "/healthz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  kl_buf_free(&r.body);

  atomic_store(&synced, 1);
  CHECK_EQ_INT(get("127.0.0.1", pp, "/readyz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  CHECK_EQ_STR(r.body.data, "ok");
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", pp, "/readyz?verbose", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  CHECK_EQ_STR(r.body.data,
               "[+]ping ok\n[+]informer-sync ok\nreadyz check passed\n");
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", pp, "/healthz/workers", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  CHECK_EQ_STR(r.body.data, "ok");
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", pp, "/healthz", &r, "POST"), 0);
  CHECK_EQ_INT(r.code, 405);
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", pp, "/healthzzz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 404);
  kl_buf_free(&r.body);
  kl_http_endpoints_free(e);
  kl_metrics_free(reg);
  atomic_store(&synced, 0);
}

static int free_port(void) {
  /* start on :0, read the port, stop: the port is then (very likely) free */
  kl_http_endpoints_opts o = {.metrics_addr = "127.0.0.1:0"};
  kl_http_endpoints *e = NULL;
  if (kl_http_endpoints_start(&o, &e, NULL) != 0) return 0;
  int p = kl_http_endpoints_metrics_port(e);
  kl_http_endpoints_free(e);
  return p;
}

TEST(same_address_shares_one_server_on_all_interfaces) {
  int port = free_port();
  CHECK(port > 0);
  char addr[32];
  snprintf(addr, sizeof addr, ":%d", port);
  kl_http_endpoints_opts o = {.metrics_addr = addr, .probe_addr = addr};
  kl_http_endpoints *e = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_http_endpoints_start(&o, &e, &err), 0);
  if (err) printf("  %s\n", err);
  free(err);
  CHECK_EQ_INT(kl_http_endpoints_metrics_port(e), port);
  CHECK_EQ_INT(kl_http_endpoints_probe_port(e), port);
  resp r;
  CHECK_EQ_INT(get("127.0.0.1", port, "/metrics", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  CHECK(strstr(r.body.data, "# TYPE") != NULL || r.body.len == 0);
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", port, "/healthz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  kl_buf_free(&r.body);
  /* a second server on the same port fails with a message naming it */
  kl_http_endpoints *e2 = NULL;
  kl_http_endpoints_opts o2 = {.metrics_addr = addr};
  CHECK_EQ_INT(kl_http_endpoints_start(&o2, &e2, &err), KL_EIO);
  CHECK(err && strstr(err, addr));
  free(err);
  CHECK(e2 == NULL);
  kl_http_endpoints_free(e);
}

TEST(address_forms_and_off_values) {
  CHECK(kl_http_addr_off(NULL));
  CHECK(kl_http_addr_off(""));
  CHECK(kl_http_addr_off("0"));
  CHECK(!kl_http_addr_off(":8080"));
  char *err = NULL;
  CHECK_EQ_INT(kl_http_addr_validate(":8080", &err), 0);
  CHECK_EQ_INT(kl_http_addr_validate("[::1]:8080", &err), 0);
  CHECK_EQ_INT(kl_http_addr_validate("8080", &err), KL_EINVAL);
  CHECK(err && strstr(err, "8080"));
  free(err);
  err = NULL;
  CHECK_EQ_INT(kl_http_addr_validate("::1:8080", &err), KL_EINVAL);
  free(err);
  err = NULL;
  CHECK_EQ_INT(kl_http_addr_validate("host:99999", &err), KL_EINVAL);
  free(err);
  err = NULL;
  /* both off: nothing listens */
  kl_http_endpoints_opts off = {.metrics_addr = "0", .probe_addr = ""};
  kl_http_endpoints *e = NULL;
  CHECK_EQ_INT(kl_http_endpoints_start(&off, &e, &err), 0);
  CHECK_EQ_INT(kl_http_endpoints_metrics_port(e), 0);
  CHECK_EQ_INT(kl_http_endpoints_probe_port(e), 0);
  kl_http_endpoints_free(e);
  /* a bad address fails before anything listens */
  kl_http_endpoints_opts bad = {.metrics_addr = "127.0.0.1:0",
                                .probe_addr = "nonsense"};
  CHECK_EQ_INT(kl_http_endpoints_start(&bad, &e, &err), KL_EINVAL);
  CHECK(err && strstr(err, "nonsense"));
  free(err);
}

/* A non-loopback IPv4 address of this machine, or "" when it has none. */
static void other_ip(char *buf, size_t n) {
  buf[0] = 0;
  struct ifaddrs *ifs = NULL, *i;
  if (getifaddrs(&ifs) != 0) return;
  for (i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    struct sockaddr_in *a = (struct sockaddr_in *)i->ifa_addr;
    if ((ntohl(a->sin_addr.s_addr) >> 24) == 127) continue;
    inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)n);
    break;
  }
  freeifaddrs(ifs);
}

TEST(loopback_bind_is_loopback_only_and_colon_port_is_everywhere) {
  char ip[64];
  other_ip(ip, sizeof ip);
  if (!ip[0]) {
    printf("  # skipped: no non-loopback IPv4 address\n");
    return;
  }
  kl_http_endpoints_opts o = {.metrics_addr = "127.0.0.1:0"};
  kl_http_endpoints *e = NULL;
  CHECK_EQ_INT(kl_http_endpoints_start(&o, &e, NULL), 0);
  int port = kl_http_endpoints_metrics_port(e);
  resp r;
  CHECK_EQ_INT(get(ip, port, "/metrics", &r, NULL), -1);
  kl_buf_free(&r.body);
  CHECK_EQ_INT(get("127.0.0.1", port, "/metrics", &r, NULL), 0);
  kl_buf_free(&r.body);
  kl_http_endpoints_free(e);
  kl_http_endpoints_opts all = {.probe_addr = ":0"};
  CHECK_EQ_INT(kl_http_endpoints_start(&all, &e, NULL), 0);
  port = kl_http_endpoints_probe_port(e);
  CHECK_EQ_INT(get(ip, port, "/healthz", &r, NULL), 0);
  CHECK_EQ_INT(r.code, 200);
  kl_buf_free(&r.body);
  kl_http_endpoints_free(e);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  RUN(metrics_and_probes_on_separate_servers);
  RUN(same_address_shares_one_server_on_all_interfaces);
  RUN(address_forms_and_off_values);
  RUN(loopback_bind_is_loopback_only_and_colon_port_is_everywhere);
  curl_global_cleanup();
  return ctest_summary();
}
