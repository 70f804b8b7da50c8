/* test_lua_json.c: JSON <-> Lua conversion (lua_json.c): decoder, encoder,
 * the per-state kl_obj table cache and read-only debug mode, driven from C
 * with a bare luaL_newstate. Run with --bench to print decode timings of a
 * 4.5 KB Pod (no assertions on time). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "ctest.h"
#include "lua_json.h"

int luaopen_klua_core(lua_State *L);

/* A realistic Pod as the API server sends it (with managedFields). */
static const char pod_json[] =
    "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"web-7"
    "d9c8b6f5d-x2k4p\",\"generateName\":\"web-7d9c8b6f5d-\",\"namespace\":\""
    "default\",\"uid\":\"6a1c0c1e-3f0e-4b8e-9d3e-2b7f5a1c9e42\",\"resourceV"
    "ersion\":\"1234567\",\"creationTimestamp\":\"2024-05-01T12:00:00Z\",\""
    "labels\":{\"app\":\"web\",\"pod-template-hash\":\"7d9c8b6f5d\",\"tier\""
    ":\"frontend\",\"app.kubernetes.io/name\":\"web\",\"app.kubernetes.io/v"
    "ersion\":\"1.25.3\"},\"annotations\":{\"kubectl.kubernetes.io/restarte"
    "dAt\":\"2024-05-01T11:59:00Z\",\"prometheus.io/scrape\":\"true\",\"pro"
    "metheus.io/port\":\"9113\"},\"ownerReferences\":[{\"apiVersion\":\"app"
    "s/v1\",\"kind\":\"ReplicaSet\",\"name\":\"web-7d9c8b6f5d\",\"uid\":\"0"
    "b1e8c4a-7e6d-4c3b-a2f1-9e8d7c6b5a43\",\"controller\":true,\"blockOwner"
    "Deletion\":true}],\"managedFields\":[{\"manager\":\"kube-controller-ma"
    "nager\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":\"2024"
    "-05-01T12:00:00Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metad"
    "ata\":{\"f:generateName\":{},\"f:labels\":{\".\":{},\"f:app\":{},\"f:p"
    "od-template-hash\":{},\"f:tier\":{}},\"f:ownerReferences\":{\".\":{},\""
    "k:{\\\"uid\\\":\\\"0b1e8c4a-7e6d-4c3b-a2f1-9e8d7c6b5a43\\\"}\":{}}},\""
    "f:spec\":{\"f:containers\":{\"k:{\\\"name\\\":\\\"nginx\\\"}\":{\".\":"
    "{},\"f:image\":{},\"f:imagePullPolicy\":{},\"f:name\":{},\"f:ports\":{"
    "\".\":{},\"k:{\\\"containerPort\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\""
    ":{\".\":{},\"f:containerPort\":{},\"f:protocol\":{}}},\"f:resources\":"
    "{\".\":{},\"f:limits\":{\".\":{},\"f:cpu\":{},\"f:memory\":{}},\"f:req"
    "uests\":{\".\":{},\"f:cpu\":{},\"f:memory\":{}}}}},\"f:dnsPolicy\":{},"
    "\"f:restartPolicy\":{},\"f:schedulerName\":{}}}},{\"manager\":\"kubele"
    "t\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":\"2024-05-"
    "01T12:00:05Z\",\"fieldsType\":\"FieldsV1\",\"subresource\":\"status\","
    "\"fieldsV1\":{\"f:status\":{\"f:conditions\":{\"k:{\\\"type\\\":\\\"Re"
    "ady\\\"}\":{\".\":{},\"f:lastProbeTime\":{},\"f:lastTransitionTime\":{"
    "},\"f:status\":{},\"f:type\":{}}},\"f:containerStatuses\":{},\"f:hostI"
    "P\":{},\"f:phase\":{},\"f:podIP\":{},\"f:podIPs\":{\".\":{},\"k:{\\\"i"
    "p\\\":\\\"10.244.1.17\\\"}\":{\".\":{},\"f:ip\":{}}},\"f:startTime\":{"
    "}}}}]},\"spec\":{\"volumes\":[{\"name\":\"kube-api-access-abcde\",\"pr"
    "ojected\":{\"sources\":[{\"serviceAccountToken\":{\"expirationSeconds\""
    ":3607,\"path\":\"token\"}},{\"configMap\":{\"name\":\"kube-root-ca.crt"
    "\",\"items\":[{\"key\":\"ca.crt\",\"path\":\"ca.crt\"}]}},{\"downwardA"
    "PI\":{\"items\":[{\"path\":\"namespace\",\"fieldRef\":{\"apiVersion\":"
    "\"v1\",\"fieldPath\":\"metadata.namespace\"}}]}}],\"defaultMode\":420}"
    "}],\"containers\":[{\"name\":\"nginx\",\"image\":\"nginx:1.25.3\",\"po"
    "rts\":[{\"containerPort\":80,\"protocol\":\"TCP\"}],\"env\":[{\"name\""
    ":\"MODE\",\"value\":\"production\"},{\"name\":\"POD_IP\",\"valueFrom\""
    ":{\"fieldRef\":{\"apiVersion\":\"v1\",\"fieldPath\":\"status.podIP\"}}"
    "}],\"resources\":{\"limits\":{\"cpu\":\"500m\",\"memory\":\"256Mi\"},\""
    "requests\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"}},\"volumeMounts\":["
    "{\"name\":\"kube-api-access-abcde\",\"readOnly\":true,\"mountPath\":\""
    "/var/run/secrets/kubernetes.io/serviceaccount\"}],\"livenessProbe\":{\""
    "httpGet\":{\"path\":\"/healthz\",\"port\":80,\"scheme\":\"HTTP\"},\"in"
    "itialDelaySeconds\":5,\"timeoutSeconds\":1,\"periodSeconds\":10,\"succ"
    "essThreshold\":1,\"failureThreshold\":3},\"terminationMessagePath\":\""
    "/dev/termination-log\",\"terminationMessagePolicy\":\"File\",\"imagePu"
    "llPolicy\":\"IfNotPresent\"}],\"restartPolicy\":\"Always\",\"terminati"
    "onGracePeriodSeconds\":30,\"dnsPolicy\":\"ClusterFirst\",\"serviceAcco"
    "untName\":\"default\",\"serviceAccount\":\"default\",\"nodeName\":\"wo"
    "rker-1\",\"securityContext\":{},\"schedulerName\":\"default-scheduler\""
    ",\"tolerations\":[{\"key\":\"node.kubernetes.io/not-ready\",\"operator"
    "\":\"Exists\",\"effect\":\"NoExecute\",\"tolerationSeconds\":300},{\"k"
    "ey\":\"node.kubernetes.io/unreachable\",\"operator\":\"Exists\",\"effe"
    "ct\":\"NoExecute\",\"tolerationSeconds\":300}],\"priority\":0,\"enable"
    "ServiceLinks\":true,\"preemptionPolicy\":\"PreemptLowerPriority\"},\"s"
    "tatus\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Initialized"
    "\",\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":\""
    "2024-05-01T12:00:00Z\"},{\"type\":\"Ready\",\"status\":\"True\",\"last"
    "ProbeTime\":null,\"lastTransitionTime\":\"2024-05-01T12:00:05Z\"},{\"t"
    "ype\":\"ContainersReady\",\"status\":\"True\",\"lastProbeTime\":null,\""
    "lastTransitionTime\":\"2024-05-01T12:00:05Z\"},{\"type\":\"PodSchedule"
    "d\",\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":"
    "\"2024-05-01T12:00:00Z\"}],\"hostIP\":\"172.18.0.3\",\"podIP\":\"10.24"
    "4.1.17\",\"podIPs\":[{\"ip\":\"10.244.1.17\"}],\"startTime\":\"2024-05"
    "-01T12:00:00Z\",\"containerStatuses\":[{\"name\":\"nginx\",\"state\":{"
    "\"running\":{\"startedAt\":\"2024-05-01T12:00:04Z\"}},\"lastState\":{}"
    ",\"ready\":true,\"restartCount\":0,\"image\":\"docker.io/library/nginx"
    ":1.25.3\",\"imageID\":\"docker.io/library/nginx@sha256:0d17b565c37bcbd"
    "895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31\",\"containerID\":\""
    "containerd://4f2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3"
    "d2e1f0a\",\"started\":true}],\"qosClass\":\"Burstable\"}}";

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushcfunction(L, luaopen_klua_core);
  lua_call(L, 0, 1);
  lua_setglobal(L, "core");
  return L;
}

/* Runs Lua code; returns its first result as a NEW string ("ERR: msg" when
 * it raised), or NULL for nil. */
static char *run(lua_State *L, const char *code) {
  int top = lua_gettop(L);
  char *res = NULL;
  if (luaL_loadstring(L, code) || lua_pcall(L, 0, 1, 0)) {
    res = kl_sprintf("ERR: %s", lua_tostring(L, -1));
  } else if (!lua_isnil(L, -1)) {
    res = kl_strdup(luaL_checkstring(L, -1));
  }
  lua_settop(L, top);
  return res;
}

#define CHECK_RUN(L, code, want)                                              \
  do {                                                                        \
    char *got_ = run(L, code);                                                \
    CHECK_EQ_STR(got_, want);                                                 \
    free(got_);                                                               \
  } while (0)

/* Semantic JSON equality (member order of objects ignored). */
static bool json_equal(kl_span a, kl_span b) {
  char ta = kl_json_type(a), tb = kl_json_type(b);
  if (ta != tb) return false;
  if (ta == 's') {
    kl_buf x = KL_BUF_INIT, y = KL_BUF_INIT;
    kl_json_unescape(a, &x);
    kl_json_unescape(b, &y);
    bool eq = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
    kl_buf_free(&x);
    kl_buf_free(&y);
    return eq;
  }
  if (ta == 'n') {
    char x[64], y[64];
    snprintf(x, sizeof x, "%.*s", (int)a.n, a.p);
    snprintf(y, sizeof y, "%.*s", (int)b.n, b.p);
    return strtod(x, NULL) == strtod(y, NULL);
  }
  if (ta == 'a') {
    kl_json_iter ia, ib;
    kl_span k, va, vb;
    kl_json_iter_init(&ia, a);
    kl_json_iter_init(&ib, b);
    for (;;) {
      bool ma = kl_json_next(&ia, &k, &va), mb = kl_json_next(&ib, &k, &vb);
      if (ma != mb) return false;
      if (!ma) return true;
      if (!json_equal(va, vb)) return false;
    }
  }
  if (ta == 'o') {
    kl_json_iter ia;
    kl_span k, va, vb;
    int na = 0, nb = 0;
    kl_json_iter_init(&ia, a);
    while (kl_json_next(&ia, &k, &va)) {
      na++;
      char *key = kl_json_strdup(k);
      const char *keys[1] = {key};
      bool found = kl_json_getv(b, keys, 1, &vb);
      free(key);
      if (!found || !json_equal(va, vb)) return false;
    }
    kl_json_iter_init(&ia, b);
    while (kl_json_next(&ia, &k, &va)) nb++;
    return na == nb;
  }
  return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

/* Decodes json, encodes the result; returns the NEW output or NULL. */
static char *round_trip(lua_State *L, const char *json) {
  kl_span in = {json, strlen(json)};
  int top = lua_gettop(L);
  if (kl_lua_push_json(L, in) != 0) return NULL;
  CHECK_EQ_INT(lua_gettop(L), top + 1);
  kl_buf out = KL_BUF_INIT;
  char *err = NULL;
  int rc = kl_lua_to_json(L, -1, &out, &err);
  lua_settop(L, top);
  if (rc != 0) {
    printf("  encode failed: %s\n", err);
    free(err);
    kl_buf_free(&out);
    return NULL;
  }
  return kl_buf_detach(&out, NULL);
}

#define CHECK_RT(L, in, want)                                                 \
  do {                                                                        \
    char *got_ = round_trip(L, in);                                           \
    CHECK_EQ_STR(got_, want);                                                 \
    free(got_);                                                               \
  } while (0)

TEST(round_trips_exactly) {
  lua_State *L = new_state();
  CHECK_RT(L, "null", "null");
  CHECK_RT(L, "true", "true");
  CHECK_RT(L, "false", "false");
  CHECK_RT(L, "{}", "{}");
  CHECK_RT(L, "[]", "[]");
  CHECK_RT(L, " [ {} , [ ] , null , [[]] ] ", "[{},[],null,[[]]]");
  CHECK_RT(L, "{\"a\":{\"b\":[1,2,{\"c\":null}]}}",
           "{\"a\":{\"b\":[1,2,{\"c\":null}]}}");
  CHECK_RT(L, "\"\"", "\"\"");
  CHECK_RT(L, "[0,-0,1,-1,42,9007199254740991,-9007199254740991]",
           "[0,0,1,-1,42,9007199254740991,-9007199254740991]");
  CHECK_RT(L, "[1.5,-0.25,0.1,1e3,1E-2,2.5e+2,123.456e-1]",
           "[1.5,-0.25,0.1,1000,0.01,250,12.3456]");
  CHECK_RT(L, "[1e300,5e-324]", "[1e+300,4.94065645841247e-324]");
  /* beyond 2^53 precision is lost (nearest double) */
  CHECK_RT(L, "[9007199254740993]", "[9007199254740992]");
  CHECK_RT(L, "[12345678901234567890123]", "[1.2345678901234568e+22]");
  /* strings: escapes come back in canonical form */
  CHECK_RT(L, "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
           "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\"");
  CHECK_RT(L, "\"\\u0001\\u001f \\u0000x\"", "\"\\u0001\\u001f \\u0000x\"");
  CHECK_RT(L, "\"\\u00e9\\u20AC\\ud83d\\ude00\"",
           "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  /* lone surrogates become U+FFFD, as Go's decoder does */
  CHECK_RT(L, "\"\\ud83dx\\ude00\"", "\"\xef\xbf\xbdx\xef\xbf\xbd\"");
  CHECK_RT(L, "\"\\ud83d\\u0041\"", "\"\xef\xbf\xbd" "A\"");
  /* duplicate keys: the last one wins */
  CHECK_RT(L, "{\"a\":1,\"a\":2}", "{\"a\":2}");
  lua_close(L);
}

TEST(pod_round_trip_is_semantically_equal) {
  lua_State *L = new_state();
  char *out = round_trip(L, pod_json);
  CHECK(out != NULL);
  if (out) {
    kl_span a = {pod_json, strlen(pod_json)}, b = {out, strlen(out)};
    CHECK(json_equal(a, b));
    CHECK_EQ_INT(strlen(out), strlen(pod_json));
    /* the check itself can fail */
    kl_span c = {"{\"kind\":\"Pod\"}", 14};
    CHECK(!json_equal(a, c));
  }
  free(out);
  /* fields read from Lua */
  kl_span in = {pod_json, strlen(pod_json)};
  CHECK_EQ_INT(kl_lua_push_json(L, in), 0);
  lua_setglobal(L, "pod");
  CHECK_RUN(L, "return pod.metadata.labels['app.kubernetes.io/name']", "web");
  CHECK_RUN(L, "return tostring(pod.spec.containers[1].ports[1].containerPort)",
            "80");
  CHECK_RUN(L, "return tostring(#pod.status.conditions)", "4");
  CHECK_RUN(L, "return tostring(pod.status.conditions[1].lastProbeTime == "
               "core.null)", "true");
  CHECK_RUN(L, "return tostring(getmetatable(pod.spec.securityContext) == "
               "core.object_mt and getmetatable(pod.status.containerStatuses[1].lastState) == "
               "core.object_mt and getmetatable(pod.spec.tolerations) == "
               "core.array_mt)", "true");
  lua_close(L);
}

TEST(malformed_json_is_an_error_and_pushes_nothing) {
  static const char *bad[] = {
      "", " ", "{", "[", "[1,", "{\"a\":", "{\"a\"}", "{\"a\" 1}", "{a:1}",
      "[1,]", "{\"a\":1,}", "[1 2]", "\"abc", "\"a\\\"", "\"\\x\"", "\"\\u12\"",
      "\"\\u12G4\"", "\"\\ud83d\\uZZZZ\"", "tru", "nul", "nulll", "01", "-",
      "1.", ".5", "1e", "1e+", "+1", "--1", "NaN", "Infinity", "[1] x",
      "{} {}", "\"a\nb\"", "\"\x01\"", "[1]]", "}", "{\"a\":1]",
  };
  lua_State *L = new_state();
  lua_pushinteger(L, 7);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kl_span in = {bad[i], strlen(bad[i])};
    char msg[200] = "";
    int rc = kl_lua_push_json_err(L, in, msg, sizeof msg);
    if (rc != KL_EJSON) printf("  accepted: %s\n", bad[i]);
    CHECK_EQ_INT(rc, KL_EJSON);
    CHECK(strncmp(msg, "malformed JSON: ", 16) == 0);
    CHECK_EQ_INT(lua_gettop(L), 1);
    CHECK_EQ_INT(lua_tointeger(L, 1), 7);
  }
  /* a span with no terminating NUL: the decoder must not read past it */
  char buf[3] = {'[', '1', '2'};
  kl_span s = {buf, 2};
  CHECK_EQ_INT(kl_lua_push_json(L, s), KL_EJSON);
  s.n = 0;
  s.p = NULL;
  CHECK_EQ_INT(kl_lua_push_json(L, s), KL_EJSON);
  char msg[200];
  kl_span t = {"[1,2,x]", 7};
  kl_lua_push_json_err(L, t, msg, sizeof msg);
  CHECK_EQ_STR(msg, "malformed JSON: unexpected character at offset 5 near 'x'");
  lua_close(L);
}

/* Nested [[[...]]] with n brackets, in a NEW string. */
static char *nested(size_t n) {
  char *s = kl_malloc(2 * n + 1);
  memset(s, '[', n);
  memset(s + n, ']', n);
  s[2 * n] = '\0';
  return s;
}

TEST(deep_nesting_is_bounded_like_the_scanner) {
  lua_State *L = new_state();
  char *deep = nested(100000);
  kl_span in = {deep, strlen(deep)};
  CHECK_EQ_INT(kl_lua_push_json(L, in), KL_EJSON);
  CHECK_EQ_INT(lua_gettop(L), 0);
  free(deep);
  /* "{"a":{"a":...}}" deep, unterminated */
  kl_buf b = KL_BUF_INIT;
  for (int i = 0; i < 100000; i++) kl_buf_adds(&b, "{\"a\":");
  kl_span o = {b.data, b.len};
  CHECK_EQ_INT(kl_lua_push_json(L, o), KL_EJSON);
  kl_buf_free(&b);
  /* whatever depth the scanner (and so kl_obj_new) accepts, we accept */
  for (size_t n = KL_JSON_MAX_DEPTH - 1; n <= KL_JSON_MAX_DEPTH + 2; n++) {
    char *s = nested(n);
    int want = kl_json_validate(s, strlen(s));
    kl_span sp = {s, strlen(s)};
    CHECK_EQ_INT(kl_lua_push_json(L, sp), want);
    lua_settop(L, 0);
    if (n == KL_JSON_MAX_DEPTH) CHECK_EQ_INT(want, 0);
    free(s);
  }
  lua_close(L);
}

/* Encodes the result of Lua code; returns NEW JSON or "ERR: msg". */
static char *encode_lua(lua_State *L, const char *code) {
  if (luaL_loadstring(L, code) || lua_pcall(L, 0, 1, 0)) {
    char *r = kl_sprintf("LUAERR: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return r;
  }
  kl_buf out = KL_BUF_INIT;
  kl_buf_adds(&out, "prefix:");
  char *err = NULL;
  int top = lua_gettop(L);
  int rc = kl_lua_to_json(L, -1, &out, &err);
  CHECK_EQ_INT(lua_gettop(L), top);
  lua_pop(L, 1);
  char *r;
  if (rc != 0) {
    CHECK_EQ_INT(rc, KL_EINVAL);
    CHECK_EQ_STR(out.data, "prefix:"); /* output rolled back */
    r = kl_sprintf("ERR: %s", err);
    free(err);
  } else {
    r = kl_strdup(out.data + 7);
  }
  kl_buf_free(&out);
  return r;
}

#define CHECK_ENC(L, code, want)                                              \
  do {                                                                        \
    char *got_ = encode_lua(L, code);                                         \
    CHECK_EQ_STR(got_, want);                                                 \
    free(got_);                                                               \
  } while (0)

TEST(encoder_rules) {
  lua_State *L = new_state();
  CHECK_ENC(L, "return {}", "{}");
  CHECK_ENC(L, "return setmetatable({}, core.array_mt)", "[]");
  CHECK_ENC(L, "return setmetatable({}, core.object_mt)", "{}");
  CHECK_ENC(L, "return {1, 'two', true, false, core.null}",
            "[1,\"two\",true,false,null]");
  CHECK_ENC(L, "return {a = {b = {}}}", "{\"a\":{\"b\":{}}}");
  CHECK_ENC(L, "return {['1'] = 'x'}", "{\"1\":\"x\"}");
  CHECK_ENC(L, "return 'q\"\\\\\\n\\1\\31'", "\"q\\\"\\\\\\n\\u0001\\u001f\"");
  CHECK_ENC(L, "return {1.5, -3, 2^53, 2^53 + 2, 1e100, 0.1, 1/3}",
            "[1.5,-3,9007199254740992,9007199254740994,1e+100,0.1,"
            "0.3333333333333333]");
  /* array_mt: holes become null; too sparse or string keys are errors */
  CHECK_ENC(L, "return setmetatable({1, nil, 3}, core.array_mt)",
            "[1,null,3]");
  CHECK_ENC(L, "return setmetatable({[100] = 1}, core.array_mt)",
            "ERR: cannot encode as JSON: array table is too sparse (1 items, "
            "largest index 100) at top level");
  CHECK_ENC(L, "return setmetatable({1, x = 2}, core.array_mt)",
            "ERR: cannot encode as JSON: array table has a non-index key at "
            "top level");
  /* object_mt: only string keys */
  CHECK_ENC(L, "return setmetatable({1}, core.object_mt)",
            "ERR: cannot encode as JSON: object table has a number key; "
            "object keys must be strings at top level");
  CHECK_ENC(L, "return {1, x = 2}",
            "ERR: cannot encode as JSON: table mixes index keys and string "
            "keys at top level");
  CHECK_ENC(L, "return {a = {[1] = 1, [3] = 3}}",
            "ERR: cannot encode as JSON: table has integer keys that are not "
            "a sequence 1..n (2 keys, largest 3) at value.a");
  CHECK_ENC(L, "return {[true] = 1}",
            "ERR: cannot encode as JSON: table has a boolean key; object keys "
            "must be strings at top level");
  CHECK_ENC(L, "return {[1.5] = 1}",
            "ERR: cannot encode as JSON: table has a number key; object keys "
            "must be strings at top level");
  CHECK_ENC(L, "return {spec = {containers = {{name = 'a', image = print}}}}",
            "ERR: cannot encode as JSON: cannot encode a function at "
            "value.spec.containers[1].image");
  CHECK_ENC(L, "return {['a b'] = {0/0}}",
            "ERR: cannot encode as JSON: cannot encode NaN at value[\"a b\"][1]");
  CHECK_ENC(L, "return {x = 1/0}",
            "ERR: cannot encode as JSON: cannot encode an infinite number at "
            "value.x");
  CHECK_ENC(L, "return {x = -1/0}",
            "ERR: cannot encode as JSON: cannot encode an infinite number at "
            "value.x");
  CHECK_ENC(L, "local t = {a = {}} t.a.b = t return t",
            "ERR: cannot encode as JSON: cycle in table at value.a.b");
  CHECK_ENC(L, "local t = {} t[1] = t return t",
            "ERR: cannot encode as JSON: cycle in table at value[1]");
  /* the same table twice (not a cycle) is fine */
  CHECK_ENC(L, "local s = {1} return {s, s}", "[[1],[1]]");
  CHECK_ENC(L, "return coroutine.create(print)",
            "ERR: cannot encode as JSON: cannot encode a thread at top level");
  CHECK_ENC(L, "return io.stdout",
            "ERR: cannot encode as JSON: cannot encode a userdata at top level");
  /* tables nested deeper than the decoder accepts; the path in the message
   * is shortened */
  char *deep = encode_lua(L, "local t = {} for i = 1, 300 do t = {t} end "
                             "return t");
  const char *want = "ERR: cannot encode as JSON: tables nested too deep at "
                     "(...)[1][1]";
  CHECK(strncmp(deep, want, strlen(want)) == 0);
  CHECK(strlen(deep) < 400);
  free(deep);
  /* as deep as the decoder accepts is fine */
  char *ok = encode_lua(L, "local t = {} for i = 1, 256 do t = {t} end "
                           "return t");
  CHECK(strncmp(ok, "[[[[", 4) == 0);
  kl_span oks = {ok, strlen(ok)};
  CHECK_EQ_INT(kl_lua_push_json(L, oks), 0);
  lua_settop(L, 0);
  free(ok);
  lua_close(L);
}

static kl_obj *mkobj(const char *json) {
  kl_obj *o = NULL;
  char *err = NULL;
  kl_obj_opts opts = {.drop = kl_obj_default_drop};
  if (kl_obj_new(json, strlen(json), &opts, &o, &err) != 0)
    printf("  kl_obj_new: %s\n", err);
  free(err);
  return o;
}

TEST(push_obj_reuses_the_table_per_version) {
  lua_State *L = new_state();
  kl_obj *a = mkobj(pod_json);
  kl_obj *a2 = mkobj(pod_json); /* same content, another version */
  uint64_t hits, misses;
  kl_lua_push_obj(L, a);
  kl_lua_push_obj(L, a);
  CHECK_EQ_INT(lua_gettop(L), 2);
  CHECK(lua_istable(L, 1));
  CHECK(lua_rawequal(L, 1, 2));
  kl_lua_push_obj(L, a2);
  CHECK(!lua_rawequal(L, 1, 3));
  kl_lua_json_cache_stats(L, &hits, &misses);
  CHECK_EQ_INT(hits, 1);
  CHECK_EQ_INT(misses, 2);
  /* managedFields were dropped by kl_obj_new; the rest is there */
  lua_setglobal(L, "o");
  CHECK_RUN(L, "return tostring(o.metadata.managedFields)", "nil");
  CHECK_RUN(L, "return o.metadata.ownerReferences[1].kind", "ReplicaSet");
  lua_settop(L, 0);

  /* the table survives a full GC while Lua holds it, even after the recent
   * set (64 entries) has moved on */
  kl_lua_push_obj(L, a);
  lua_setglobal(L, "keep");
  kl_obj *others[100];
  for (int i = 0; i < 100; i++) {
    char *j = kl_sprintf("{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c%d\"}}", i);
    others[i] = mkobj(j);
    free(j);
    kl_lua_push_obj(L, others[i]);
    lua_pop(L, 1);
  }
  lua_gc(L, LUA_GCCOLLECT, 0);
  kl_lua_push_obj(L, a);
  lua_getglobal(L, "keep");
  CHECK(lua_rawequal(L, -1, -2));
  lua_settop(L, 0);

  /* not referenced from Lua: kept while among the 64 recent objects ... */
  lua_pushnil(L);
  lua_setglobal(L, "o");
  kl_lua_json_cache_stats(L, &hits, &misses);
  kl_lua_push_obj(L, a2);
  lua_pop(L, 1);
  for (int i = 0; i < 10; i++) {
    kl_lua_push_obj(L, others[i]);
    lua_pop(L, 1);
  }
  lua_gc(L, LUA_GCCOLLECT, 0);
  uint64_t h0, m0;
  kl_lua_json_cache_stats(L, &h0, &m0);
  kl_lua_push_obj(L, a2);
  lua_pop(L, 1);
  kl_lua_json_cache_stats(L, &hits, &misses);
  CHECK_EQ_INT(hits, h0 + 1);
  CHECK_EQ_INT(misses, m0);
  /* ... and reconverted once it fell out of them and was collected */
  lua_pushnil(L);
  lua_setglobal(L, "keep");
  for (int i = 0; i < 100; i++) {
    kl_lua_push_obj(L, others[i]);
    lua_pop(L, 1);
  }
  lua_gc(L, LUA_GCCOLLECT, 0);
  kl_lua_json_cache_stats(L, &h0, &m0);
  kl_lua_push_obj(L, a2);
  lua_pop(L, 1);
  kl_lua_json_cache_stats(L, &hits, &misses);
  CHECK_EQ_INT(misses, m0 + 1);
  CHECK_EQ_INT(hits, h0);

  /* a second state converts on its own */
  lua_State *L2 = new_state();
  kl_lua_push_obj(L2, a);
  kl_lua_json_cache_stats(L2, &hits, &misses);
  CHECK_EQ_INT(misses, 1);
  CHECK_EQ_INT(hits, 0);
  lua_close(L2);

  for (int i = 0; i < 100; i++) kl_obj_unref(others[i]);
  kl_obj_unref(a);
  kl_obj_unref(a2);
  lua_close(L);
}

TEST(to_obj_builds_an_object) {
  lua_State *L = new_state();
  CHECK_EQ_INT(luaL_dostring(L, "return {kind = 'ConfigMap', metadata = "
                                "{name = 'n', namespace = 'ns', labels = "
                                "setmetatable({}, core.object_mt)}, data = "
                                "{k = 'v'}}"),
               0);
  kl_obj *o = NULL;
  char *err = NULL;
  kl_obj_opts opts = {.api_version = "v1"};
  CHECK_EQ_INT(kl_lua_to_obj(L, -1, &opts, &o, &err), 0);
  CHECK(o != NULL);
  if (o) {
    CHECK_EQ_STR(kl_obj_key(o), "ns/n");
    kl_span v;
    CHECK(kl_obj_get(o, "apiVersion", &v) && kl_json_streq(v, "v1"));
    CHECK(kl_obj_get(o, "metadata.labels", &v) && v.n == 2);
    kl_obj_unref(o);
  }
  lua_settop(L, 0);
  CHECK_EQ_INT(luaL_dostring(L, "return {metadata = {name = print}}"), 0);
  CHECK_EQ_INT(kl_lua_to_obj(L, -1, NULL, &o, &err), KL_EINVAL);
  CHECK(o == NULL);
  CHECK(err && strstr(err, "value.metadata.name"));
  free(err);
  err = NULL;
  lua_settop(L, 0);
  CHECK_EQ_INT(luaL_dostring(L, "return {metadata = {}}"), 0); /* no name */
  CHECK_EQ_INT(kl_lua_to_obj(L, -1, NULL, &o, &err), KL_EINVAL);
  CHECK(err != NULL);
  free(err);
  lua_close(L);
}

TEST(readonly_debug_mode) {
  lua_State *L = new_state();
  kl_obj *a = mkobj(pod_json);
  CHECK(!kl_lua_json_readonly(L));
  kl_lua_push_obj(L, a);
  lua_setglobal(L, "before");
  kl_lua_json_set_readonly(L, true);
  CHECK(kl_lua_json_readonly(L));
  kl_lua_push_obj(L, a);
  lua_setglobal(L, "o");
  /* switching modes reconverts (the old table was not marked) */
  CHECK_RUN(L, "return tostring(before ~= o)", "true");
  CHECK_RUN(L, "o.spec.newfield = 1 return 'no error'",
            "ERR: [string \"o.spec.newfield = 1 return 'no error'\"]:1: "
            "attempt to set field 'newfield' of read-only object Pod "
            "default/web-7d9c8b6f5d-x2k4p (copy it first: "
            "require('klua.json').copy(obj))");
  CHECK_RUN(L, "o.status.conditions[5] = 1 return 'no error'",
            "ERR: [string \"o.status.conditions[5] = 1 return 'no error'\"]:1: "
            "attempt to set a number key of read-only object Pod "
            "default/web-7d9c8b6f5d-x2k4p (copy it first: "
            "require('klua.json').copy(obj))");
  /* decoded JSON that is not a pushed object stays writable */
  CHECK_RUN(L, "local t = core.json_decode('{\"a\":{}}') t.a.b = 1 "
               "return core.json_encode(t)", "{\"a\":{\"b\":1}}");
  /* reading and iterating work as usual */
  CHECK_RUN(L, "local n = 0 for k in pairs(o.metadata.labels) do n = n + 1 "
               "end return n .. ' ' .. #o.status.conditions", "5 4");
  /* unmodified: pushing again is fine and returns the same table */
  kl_lua_push_obj(L, a);
  lua_getglobal(L, "o");
  CHECK(lua_rawequal(L, -1, -2));
  lua_settop(L, 0);
  /* an existing field changed: caught at the next push */
  CHECK_RUN(L, "o.metadata.labels.app = 'x' return 'ok'", "ok");
  /* push through a protected call since it raises */
  lua_getglobal(L, "core");
  lua_getfield(L, -1, "json_testobj");
  lua_pushstring(L, pod_json);
  lua_call(L, 1, 1);
  lua_setglobal(L, "pusher");
  lua_settop(L, 0);
  CHECK_RUN(L, "local t = pusher() t.metadata.labels.app = 'x' "
               "local ok, err = pcall(pusher) return tostring(ok) .. ': ' .. err",
            "false: object Pod default/web-7d9c8b6f5d-x2k4p was modified in "
            "Lua (pushed objects are read-only; copy before changing)");
  CHECK_RUN(L, "local t = pusher() t.metadata.labels.app = 'web' "
               "local t2 = pusher() return tostring(t == t2)", "true");
  CHECK_RUN(L, "local t = pusher() t.metadata.labels.app = nil "
               "local ok, err = pcall(pusher) return tostring(ok)", "false");
  kl_lua_json_set_readonly(L, false);
  CHECK_RUN(L, "local t = pusher() t.spec.newfield = 1 return 'writable'",
            "writable");
  kl_obj_unref(a);
  lua_close(L);
}

/* Mutated Pods: the decoder accepts exactly what the validating scanner
 * accepts, never leaves anything on the stack when it fails, and whatever it
 * accepts encodes and decodes again to the same length. */
TEST(mutations_agree_with_the_scanner) {
  lua_State *L = new_state();
  static const char alpha[] = "{}[],:\"\\u0123456789abcdefABCDEF-+.eE tnrufl"
                              "\x01\x7f\xc3";
  size_t n0 = strlen(pod_json);
  char *buf = kl_malloc(n0 + 1);
  uint64_t s = 88172645463325252ull;
  int accepted = 0, rejected = 0;
  for (int it = 0; it < 4000; it++) {
    memcpy(buf, pod_json, n0);
    size_t n = n0;
    for (int j = 0; j < 1 + it % 3 && n > 0; j++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      size_t pos = (s >> 8) % n;
      char c = alpha[(s >> 40) % (sizeof alpha - 1)];
      switch (s % 3) {
      case 0: buf[pos] = c; break;
      case 1: memmove(buf + pos, buf + pos + 1, n - pos - 1); n--; break;
      default: n = pos; /* truncate */
      }
    }
    int want = kl_json_validate(buf, n);
    kl_span sp = {buf, n};
    int rc = kl_lua_push_json(L, sp);
    CHECK_EQ_INT(rc, want);
    if (rc != 0) {
      rejected++;
      CHECK_EQ_INT(lua_gettop(L), 0);
      continue;
    }
    accepted++;
    kl_buf a = KL_BUF_INIT, b = KL_BUF_INIT;
    CHECK_EQ_INT(kl_lua_to_json(L, -1, &a, NULL), 0);
    lua_settop(L, 0);
    kl_span as = {a.data, a.len};
    CHECK_EQ_INT(kl_lua_push_json(L, as), 0);
    CHECK_EQ_INT(kl_lua_to_json(L, -1, &b, NULL), 0);
    CHECK_EQ_INT(a.len, b.len);
    lua_settop(L, 0);
    kl_buf_free(&a);
    kl_buf_free(&b);
  }
  /* both outcomes were exercised */
  CHECK(accepted > 100);
  CHECK(rejected > 100);
  free(buf);
  lua_close(L);
}

TEST(every_byte_survives_a_string_round_trip) {
  lua_State *L = new_state();
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  lua_pushlstring(L, all, sizeof all);
  kl_buf out = KL_BUF_INIT;
  CHECK_EQ_INT(kl_lua_to_json(L, -1, &out, NULL), 0);
  CHECK_EQ_INT(strlen(out.data), out.len); /* no raw NUL in the output */
  kl_span sp = {out.data, out.len};
  CHECK_EQ_INT(kl_json_validate(out.data, out.len), 0);
  CHECK_EQ_INT(kl_lua_push_json(L, sp), 0);
  size_t n = 0;
  const char *back = lua_tolstring(L, -1, &n);
  CHECK_EQ_INT(n, 256);
  CHECK(back && memcmp(back, all, 256) == 0);
  /* a long string with escapes (scratch buffer growth) */
  kl_buf big = KL_BUF_INIT;
  kl_buf_addc(&big, '"');
  for (int i = 0; i < 50000; i++) kl_buf_adds(&big, "ab\\n\\u00e9\\\"");
  kl_buf_addc(&big, '"');
  kl_span bs = {big.data, big.len};
  CHECK_EQ_INT(kl_lua_push_json(L, bs), 0);
  lua_tolstring(L, -1, &n);
  CHECK_EQ_INT(n, 50000 * 6);
  kl_buf_free(&big);
  kl_buf_free(&out);
  lua_close(L);
}

/* CPU time of this thread: steadier than wall time on a shared machine. */
static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bench(void) {
  lua_State *L = new_state();
  kl_span in = {pod_json, strlen(pod_json)};
  int n = 20000;
  for (int round = 0; round < 3; round++) {
    uint64_t t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
      kl_lua_push_json(L, in);
      lua_pop(L, 1);
    }
    uint64_t t1 = cpu_ns();
    kl_buf out = KL_BUF_INIT;
    kl_lua_push_json(L, in);
    uint64_t t2 = cpu_ns();
    for (int i = 0; i < n; i++) {
      out.len = 0;
      kl_lua_to_json(L, -1, &out, NULL);
    }
    uint64_t t3 = cpu_ns();
    lua_pop(L, 1);
    kl_obj *o = mkobj(pod_json);
    size_t olen;
    kl_obj_json(o, &olen);
    uint64_t t4 = cpu_ns();
    for (int i = 0; i < n; i++) {
      kl_lua_push_obj(L, o);
      lua_pop(L, 1);
    }
    uint64_t t5 = cpu_ns();
    kl_obj_unref(o);
    printf("# CPU time per call, pod %zu bytes: decode %.2f us, encode %.2f us, push_obj (no "
           "managedFields, %zu bytes) cached %.3f us\n",
           in.n, (double)(t1 - t0) / n / 1000, (double)(t3 - t2) / n / 1000,
           olen, (double)(t5 - t4) / n / 1000);
    kl_buf_free(&out);
  }
  lua_close(L);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
    bench();
    return 0;
  }
  RUN(round_trips_exactly);
  RUN(pod_round_trip_is_semantically_equal);
  RUN(malformed_json_is_an_error_and_pushes_nothing);
  RUN(deep_nesting_is_bounded_like_the_scanner);
  RUN(encoder_rules);
  RUN(push_obj_reuses_the_table_per_version);
  RUN(to_obj_builds_an_object);
  RUN(readonly_debug_mode);
  RUN(mutations_agree_with_the_scanner);
  RUN(every_byte_survives_a_string_round_trip);
  return ctest_summary();
}
