/* test_selector.c: label and field selectors: the query syntax, the
 * LabelSelector object, matching against JSON, kl_obj and cJSON, errors as
 * kube-apiserver words them, canonical strings. */
#include "ctest.h"
#include "object.h"
#include "selector.h"

static kl_span S(const char *s) {
  kl_span sp = {s, strlen(s)};
  return sp;
}

/* Parses sel (must succeed) and matches it against the labels JSON. */
static int lmatch(const char *sel, const char *labels) {
  kl_selector *s = NULL;
  char *err = NULL;
  if (kl_selector_parse(sel, &s, &err) != 0) {
    printf("  unexpected parse error for '%s': %s\n", sel, err);
    free(err);
    return -1;
  }
  bool m = kl_selector_matches_labels(s, labels ? S(labels) : (kl_span){0});
  /* the three other entry points must agree */
  char *obj = kl_sprintf("{\"metadata\":{\"name\":\"x\"%s%s}}",
                         labels ? ",\"labels\":" : "", labels ? labels : "");
  bool m2 = kl_selector_matches_json(s, S(obj));
  cJSON *t = cJSON_Parse(obj);
  bool m3 = kl_selector_matches_cjson(s, t);
  kl_obj *o = NULL;
  int rc = kl_obj_new(obj, strlen(obj), NULL, &o, NULL);
  bool m4 = rc == 0 && kl_selector_matches_obj(s, o);
  kl_obj_unref(o);
  cJSON_Delete(t);
  free(obj);
  kl_selector_free(s);
  if (m != m2 || m != m3 || m != m4) {
    printf("  entry points disagree for '%s'\n", sel);
    return -1;
  }
  return m;
}

static char *parse_err(const char *sel) {
  kl_selector *s = NULL;
  char *err = NULL;
  int rc = kl_selector_parse(sel, &s, &err);
  if (rc == 0) {
    kl_selector_free(s);
    return kl_strdup("(parsed)");
  }
  return err;
}

static char *canon(const char *sel) {
  kl_selector *s = NULL;
  if (kl_selector_parse(sel, &s, NULL) != 0) return kl_strdup("(error)");
  char *c = kl_selector_string(s);
  kl_selector_free(s);
  return c;
}

TEST(equality) {
  const char *l = "{\"app\":\"web\",\"tier\":\"front\"}";
  CHECK_EQ_INT(lmatch("app=web", l), 1);
  CHECK_EQ_INT(lmatch("app==web", l), 1);
  CHECK_EQ_INT(lmatch("app=db", l), 0);
  CHECK_EQ_INT(lmatch("app!=db", l), 1);
  CHECK_EQ_INT(lmatch("app!=web", l), 0);
  CHECK_EQ_INT(lmatch("env!=prod", l), 1); /* absent label matches != */
  CHECK_EQ_INT(lmatch("env=prod", l), 0);
  CHECK_EQ_INT(lmatch("app=web,tier=front", l), 1);
  CHECK_EQ_INT(lmatch("app=web,tier=back", l), 0);
  CHECK_EQ_INT(lmatch("  app = web ,  tier=front ", l), 1);
  CHECK_EQ_INT(lmatch("app=", "{\"app\":\"\"}"), 1);
  CHECK_EQ_INT(lmatch("app=", l), 0);
  CHECK_EQ_INT(lmatch("app=web", NULL), 0);
  CHECK_EQ_INT(lmatch("app!=web", NULL), 1);
}

TEST(set_based) {
  const char *l = "{\"app\":\"web\",\"tier\":\"front\"}";
  CHECK_EQ_INT(lmatch("app in (web,db)", l), 1);
  CHECK_EQ_INT(lmatch("app in (db)", l), 0);
  CHECK_EQ_INT(lmatch("app notin (db, cache)", l), 1);
  CHECK_EQ_INT(lmatch("app notin (web)", l), 0);
  CHECK_EQ_INT(lmatch("env notin (prod)", l), 1);
  CHECK_EQ_INT(lmatch("env in (prod)", l), 0);
  CHECK_EQ_INT(lmatch("app", l), 1);
  CHECK_EQ_INT(lmatch("env", l), 0);
  CHECK_EQ_INT(lmatch("!env", l), 1);
  CHECK_EQ_INT(lmatch("!app", l), 0);
  /* the set-based capture: app in (web,db),tier notin (frontend),!env */
  CHECK_EQ_INT(lmatch("app in (web,db),tier notin (frontend),!env", l), 1);
  CHECK_EQ_INT(lmatch("app in (web,db),tier notin (front),!env", l), 0);
  /* "in" and "notin" are ordinary identifiers as keys and values */
  CHECK_EQ_INT(lmatch("in=notin", "{\"in\":\"notin\"}"), 1);
  CHECK_EQ_INT(lmatch("a in (in,notin)", "{\"a\":\"in\"}"), 1);
  /* empty value list member */
  CHECK_EQ_INT(lmatch("a in (,x)", "{\"a\":\"\"}"), 1);
  CHECK_EQ_INT(lmatch("a in ()", "{\"a\":\"\"}"), 1);
  /* gt / lt */
  CHECK_EQ_INT(lmatch("n>5", "{\"n\":\"7\"}"), 1);
  CHECK_EQ_INT(lmatch("n>5", "{\"n\":\"5\"}"), 0);
  CHECK_EQ_INT(lmatch("n<5", "{\"n\":\"-2\"}"), 1);
  CHECK_EQ_INT(lmatch("n<5", "{\"n\":\"abc\"}"), 0);
  CHECK_EQ_INT(lmatch("n<5", NULL), 0);
}

TEST(empty_selector_matches_everything) {
  CHECK_EQ_INT(lmatch("", "{\"a\":\"b\"}"), 1);
  CHECK_EQ_INT(lmatch("   ", NULL), 1);
  kl_selector *s = NULL;
  CHECK_EQ_INT(kl_selector_parse("", &s, NULL), 0);
  CHECK(kl_selector_empty(s));
  CHECK(!kl_selector_matches_nothing(s));
  kl_selector_free(s);
  CHECK(kl_selector_matches_labels(NULL, S("{}")));
}

TEST(escaped_label_keys_and_values_in_json) {
  /* JSON escapes in the stored labels still compare by their value */
  CHECK_EQ_INT(lmatch("app=web", "{\"\\u0061pp\":\"w\\u0065b\"}"), 1);
  /* non-string values are not labels */
  CHECK_EQ_INT(lmatch("app", "{\"app\":3}"), 0);
}

TEST(prefixed_keys) {
  const char *l = "{\"app.kubernetes.io/name\":\"x\"}";
  CHECK_EQ_INT(lmatch("app.kubernetes.io/name=x", l), 1);
  CHECK_EQ_INT(lmatch("app.kubernetes.io/name in (y)", l), 0);
}

TEST(errors_as_kube_apiserver) {
  char *e;
  /* the exact message of errors/400_invalid_label_selector.http */
  e = parse_err("app===");
  CHECK_EQ_STR(e, "unable to parse requirement: found '=', expected: "
                  "identifier");
  free(e);
  e = parse_err("app=web,");
  CHECK_EQ_STR(e, "found '', expected: identifier after ','");
  free(e);
  e = parse_err("app in web");
  CHECK_EQ_STR(e, "unable to parse requirement: found 'web' expected: '('");
  free(e);
  e = parse_err("app in (a b)");
  CHECK_EQ_STR(e, "unable to parse requirement: found 'b', expected: ',' or "
                  "')'");
  free(e);
  e = parse_err("app web");
  CHECK_EQ_STR(e, "unable to parse requirement: found 'web', expected: '=', "
                  "'!=', '==', 'in', notin'");
  free(e);
  e = parse_err("=x");
  CHECK_EQ_STR(e, "found '=', expected: !, identifier, or 'end of string'");
  free(e);
  e = parse_err("!a=b");
  CHECK_EQ_STR(e, "found '=', expected: ',' or 'end of string'");
  free(e);
  e = parse_err("a=b=c");
  CHECK_EQ_STR(e, "found '=', expected: ',' or 'end of string'");
  free(e);
  e = parse_err("-bad=x");
  CHECK(e && strncmp(e, "unable to parse requirement: invalid label key "
                        "\"-bad\": name part must consist of alphanumeric",
                     70) == 0);
  free(e);
  e = parse_err("a=-bad");
  CHECK(e && strstr(e, "invalid label value: \"-bad\": at key: \"a\": a "
                       "valid label must be an empty string"));
  free(e);
  e = parse_err("Example.com/x=y");
  CHECK(e && strstr(e, "prefix part a lowercase RFC 1123 subdomain"));
  free(e);
  e = parse_err("/x=y");
  CHECK(e && strstr(e, "prefix part must be non-empty"));
  free(e);
  e = parse_err("a/b/c=y");
  CHECK(e && strstr(e, "a qualified name must consist"));
  free(e);
  e = parse_err("n>x");
  CHECK(e && strstr(e, "the value must be an integer"));
  free(e);
  /* 63 characters are fine, 64 are not */
  char k63[80], k64[80];
  memset(k63, 'a', 63);
  strcpy(k63 + 63, "=v");
  memset(k64, 'a', 64);
  strcpy(k64 + 64, "=v");
  e = parse_err(k63);
  CHECK_EQ_STR(e, "(parsed)");
  free(e);
  e = parse_err(k64);
  CHECK(e && strstr(e, "name part must be no more than 63 characters"));
  free(e);
  char v64[80];
  strcpy(v64, "a=");
  memset(v64 + 2, 'b', 64);
  v64[66] = '\0';
  e = parse_err(v64);
  CHECK(e && strstr(e, "must be no more than 63 characters"));
  free(e);
}

TEST(canonical_string) {
  char *c;
  c = canon(" tier notin (b,a,a) , app==web,!env, x");
  CHECK_EQ_STR(c, "app=web,!env,tier notin (a,b),x");
  free(c);
  c = canon("x,!env,tier notin (a,b),app=web");
  CHECK_EQ_STR(c, "app=web,!env,tier notin (a,b),x");
  free(c);
  c = canon("");
  CHECK_EQ_STR(c, "");
  free(c);
  c = canon("a!=b,n>3");
  CHECK_EQ_STR(c, "a!=b,n>3");
  free(c);
  /* the canonical form parses back to itself */
  c = canon("b in (z,y),a");
  char *c2 = canon(c);
  CHECK_EQ_STR(c2, c);
  free(c);
  free(c2);
}

TEST(from_labelselector_json) {
  kl_selector *s = NULL;
  char *err = NULL;
  const char *js =
      "{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":["
      "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]},"
      "{\"key\":\"env\",\"operator\":\"DoesNotExist\"}]}";
  CHECK_EQ_INT(kl_selector_from_json(S(js), &s, &err), 0);
  CHECK(kl_selector_matches_labels(s, S("{\"app\":\"web\",\"tier\":\"a\"}")));
  CHECK(!kl_selector_matches_labels(s, S("{\"app\":\"web\",\"tier\":\"c\"}")));
  CHECK(!kl_selector_matches_labels(
      s, S("{\"app\":\"web\",\"tier\":\"a\",\"env\":\"x\"}")));
  char *c = kl_selector_string(s);
  CHECK_EQ_STR(c, "app=web,!env,tier in (a,b)");
  free(c);
  kl_selector_free(s);

  /* {} matches everything, null matches nothing */
  CHECK_EQ_INT(kl_selector_from_json(S("{}"), &s, NULL), 0);
  CHECK(kl_selector_empty(s));
  CHECK(kl_selector_matches_labels(s, S("{}")));
  kl_selector_free(s);
  CHECK_EQ_INT(kl_selector_from_json(S("null"), &s, NULL), 0);
  CHECK(kl_selector_matches_nothing(s));
  CHECK(!kl_selector_matches_labels(s, S("{}")));
  CHECK(!kl_selector_matches_cjson(s, NULL));
  kl_selector_free(s);

  /* errors */
  CHECK_EQ_INT(kl_selector_from_json(
                   S("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
                     "\"In\",\"values\":[]}]}"),
                   &s, &err),
               KL_EINVAL);
  CHECK(err && strstr(err, "values set can't be empty"));
  free(err);
  CHECK_EQ_INT(kl_selector_from_json(
                   S("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
                     "\"Like\"}]}"),
                   &s, &err),
               KL_EINVAL);
  CHECK_EQ_STR(err, "\"Like\" is not a valid pod selector operator");
  free(err);
  CHECK_EQ_INT(kl_selector_from_json(
                   S("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
                     "\"Exists\",\"values\":[\"x\"]}]}"),
                   &s, &err),
               KL_EINVAL);
  CHECK(err && strstr(err, "values set must be empty"));
  free(err);
  CHECK_EQ_INT(kl_selector_from_json(S("{\"matchLabels\":"), &s, &err),
               KL_EJSON);
  free(err);
  CHECK_EQ_INT(kl_selector_from_json(S("{\"matchLabels\":{\"a\":1}}"), &s,
                                     &err),
               KL_EINVAL);
  free(err);
}

TEST(requirement_view) {
  kl_selector *s = NULL;
  CHECK_EQ_INT(kl_selector_parse("b in (y,x),a", &s, NULL), 0);
  CHECK_EQ_INT(kl_selector_count(s), 2);
  const char *key;
  kl_sel_op op;
  const char *const *vals;
  size_t nv;
  kl_selector_requirement(s, 1, &key, &op, &vals, &nv);
  CHECK_EQ_STR(key, "b");
  CHECK_EQ_INT(op, KL_SEL_IN);
  CHECK_EQ_INT(nv, 2);
  CHECK_EQ_STR(vals[0], "x");
  kl_selector_free(s);
}

static int fmatch(const char *sel, const char *obj) {
  kl_fieldsel *fs = NULL;
  char *err = NULL;
  if (kl_fieldsel_parse(sel, &fs, &err) != 0) {
    printf("  unexpected field selector error for '%s': %s\n", sel, err);
    free(err);
    return -1;
  }
  bool m = kl_fieldsel_matches_json(fs, S(obj));
  cJSON *t = cJSON_Parse(obj);
  bool m2 = kl_fieldsel_matches_cjson(fs, t);
  cJSON_Delete(t);
  kl_fieldsel_free(fs);
  if (m != m2) {
    printf("  json/cjson disagree for '%s'\n", sel);
    return -1;
  }
  return m;
}

TEST(field_selectors) {
  const char *pod =
      "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\"},"
      "\"spec\":{\"nodeName\":\"n1\",\"replicas\":3,\"paused\":false},"
      "\"status\":{\"phase\":\"Running\"}}";
  CHECK_EQ_INT(fmatch("metadata.name=p1", pod), 1);
  CHECK_EQ_INT(fmatch("metadata.name==p1", pod), 1);
  CHECK_EQ_INT(fmatch("metadata.name!=p1", pod), 0);
  CHECK_EQ_INT(fmatch("metadata.name!=p2", pod), 1);
  CHECK_EQ_INT(fmatch("metadata.name=p1,metadata.namespace=ns", pod), 1);
  CHECK_EQ_INT(fmatch("metadata.name=p1,metadata.namespace=other", pod), 0);
  CHECK_EQ_INT(fmatch("status.phase=Running,spec.nodeName=n1", pod), 1);
  CHECK_EQ_INT(fmatch("spec.replicas=3", pod), 1);
  CHECK_EQ_INT(fmatch("spec.paused=false", pod), 1);
  CHECK_EQ_INT(fmatch("spec.schedulerName=", pod), 1); /* absent reads "" */
  CHECK_EQ_INT(fmatch("spec.nodeName=", pod), 0);
  CHECK_EQ_INT(fmatch("spec.nodeName!=", pod), 1);
  CHECK_EQ_INT(fmatch("spec=x", pod), 0);  /* objects equal nothing */
  CHECK_EQ_INT(fmatch("spec!=x", pod), 1);
  CHECK_EQ_INT(fmatch("", pod), 1);
  CHECK_EQ_INT(fmatch("metadata.name=a\\,b", "{\"metadata\":{\"name\":\"a,b\"}}"),
               1);
  CHECK_EQ_INT(fmatch("metadata.name=a\\=b\\\\",
                      "{\"metadata\":{\"name\":\"a=b\\\\\"}}"),
               1);
}

TEST(field_selector_parse_and_string) {
  kl_fieldsel *fs = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_fieldsel_parse("metadata.namespace!=b,metadata.name==a\\,x",
                                 &fs, &err),
               0);
  CHECK_EQ_INT(kl_fieldsel_count(fs), 2);
  CHECK_EQ_STR(kl_fieldsel_field(fs, 0), "metadata.name");
  CHECK_EQ_STR(kl_fieldsel_value(fs, 0), "a,x");
  CHECK(!kl_fieldsel_negated(fs, 0));
  CHECK(kl_fieldsel_negated(fs, 1));
  char *c = kl_fieldsel_string(fs);
  CHECK_EQ_STR(c, "metadata.name=a\\,x,metadata.namespace!=b");
  free(c);
  kl_fieldsel_free(fs);

  CHECK_EQ_INT(kl_fieldsel_parse("foo", &fs, &err), KL_EINVAL);
  CHECK_EQ_STR(err, "invalid selector: 'foo'; can't understand 'foo'");
  free(err);
  CHECK_EQ_INT(kl_fieldsel_parse("a=b=c", &fs, &err), KL_EINVAL);
  CHECK(err && strstr(err, "unescaped character"));
  free(err);
  CHECK_EQ_INT(kl_fieldsel_parse("a=b\\x", &fs, &err), KL_EINVAL);
  CHECK(err && strstr(err, "invalid escape sequence"));
  free(err);
  CHECK_EQ_INT(kl_fieldsel_parse("a=b\\", &fs, &err), KL_EINVAL);
  free(err);
  CHECK_EQ_INT(kl_fieldsel_parse(",,", &fs, &err), 0);
  CHECK(kl_fieldsel_empty(fs));
  kl_fieldsel_free(fs);
}

int main(void) {
  RUN(equality);
  RUN(set_based);
  RUN(empty_selector_matches_everything);
  RUN(escaped_label_keys_and_values_in_json);
  RUN(prefixed_keys);
  RUN(errors_as_kube_apiserver);
  RUN(canonical_string);
  RUN(from_labelselector_json);
  RUN(requirement_view);
  RUN(field_selectors);
  RUN(field_selector_parse_and_string);
  return ctest_summary();
}
