/* test_manifest.c: YAML/JSON manifests: multi-document streams, typed
 * scalars as Kubernetes' decoder types them, anchors, directories read in
 * name order, errors naming file/document/line, and the YAML emitter. */
#include <sys/stat.h>
#include <unistd.h>

#include "ctest.h"
#include "manifest.h"
#include "testutil.h"

static cJSON *parse(const char *y, char **err) {
  cJSON *out = NULL;
  if (err) *err = NULL;
  if (kl_manifest_parse(y, strlen(y), "t.yaml", 0, &out, err) != 0)
    return NULL;
  return out;
}

TEST(multi_document_stream) {
  cJSON *d = parse("# leading comment\n"
                   "apiVersion: v1\n"
                   "kind: ConfigMap\n"
                   "metadata:\n"
                   "  name: a\n"
                   "---\n"
                   "---\n"
                   "# only a comment\n"
                   "---\n"
                   "apiVersion: v1\n"
                   "kind: Namespace\n"
                   "metadata: {name: b}\n"
                   "...\n",
                   NULL);
  CHECK(tu_json_same(d, "[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                "{\"name\":\"a\"}},{\"apiVersion\":\"v1\",\"kind\":"
                "\"Namespace\",\"metadata\":{\"name\":\"b\"}}]"));
  cJSON_Delete(d);
  d = parse("", NULL);
  CHECK(tu_json_same(d, "[]"));
  cJSON_Delete(d);
}

TEST(typed_scalars) {
  cJSON *d = parse("i: 42\n"
                   "neg: -7\n"
                   "oct: 0644\n"
                   "oct2: 0o17\n"
                   "hex: 0x1F\n"
                   "under: 1_000\n"
                   "f: 1.5\n"
                   "e: 1e3\n"
                   "t: true\n"
                   "T: True\n"
                   "y: yes\n"
                   "off: off\n"
                   "nul: null\n"
                   "tilde: ~\n"
                   "empty:\n"
                   "qs: \"42\"\n"
                   "sq: 'true'\n"
                   "s: hello world\n"
                   "ver: 1.2.3\n"
                   "date: 2001-12-14\n"
                   "dot: .5\n"
                   "tagged: !!str 12\n"
                   "lit: |\n"
                   "  line1\n"
                   "  line2\n"
                   "folded: >-\n"
                   "  a\n"
                   "  b\n",
                   NULL);
  CHECK(tu_json_same(d, "[{\"i\":42,\"neg\":-7,\"oct\":420,\"oct2\":15,\"hex\":31,"
                "\"under\":1000,\"f\":1.5,\"e\":1000,\"t\":true,\"T\":true,"
                "\"y\":true,\"off\":false,\"nul\":null,\"tilde\":null,"
                "\"empty\":null,\"qs\":\"42\",\"sq\":\"true\",\"s\":\"hello "
                "world\",\"ver\":\"1.2.3\",\"date\":\"2001-12-14\",\"dot\":0.5,"
                "\"tagged\":\"12\",\"lit\":\"line1\\nline2\\n\",\"folded\":"
                "\"a b\"}]"));
  cJSON_Delete(d);
}

TEST(anchors_and_merge_keys) {
  cJSON *d = parse("base: &b {app: web, tier: front}\n"
                   "copy: *b\n"
                   "merged:\n"
                   "  <<: *b\n"
                   "  tier: back\n"
                   "list: [&x 1, *x]\n",
                   NULL);
  CHECK(tu_json_same(d, "[{\"base\":{\"app\":\"web\",\"tier\":\"front\"},\"copy\":{"
                "\"app\":\"web\",\"tier\":\"front\"},\"merged\":{\"tier\":"
                "\"back\",\"app\":\"web\"},\"list\":[1,1]}]"));
  cJSON_Delete(d);
  /* billion laughs is refused, not expanded */
  char *err = NULL;
  d = parse("a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
            "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
            "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
            &err);
  CHECK(d == NULL);
  CHECK(err && strstr(err, "too many alias expansions"));
  free(err);
  d = parse("a: *nope\n", &err);
  CHECK(d == NULL);
  CHECK_EQ_STR(err, "t.yaml: document 1: line 1: unknown anchor 'nope' "
                    "referenced");
  free(err);
}

TEST(json_input) {
  cJSON *d = parse("{\n\t\"kind\": \"ConfigMap\", \"data\": {\"a\": \"1\"}}\n",
                   NULL);
  CHECK(tu_json_same(d, "[{\"kind\":\"ConfigMap\",\"data\":{\"a\":\"1\"}}]"));
  cJSON_Delete(d);
}

TEST(errors_name_file_document_line) {
  char *err = NULL;
  cJSON *d = parse("a: 1\n---\nb: 2\nc: [1, 2\nd: 3\n", &err);
  CHECK(d == NULL);
  CHECK(err && strncmp(err, "t.yaml: document 2: line ", 25) == 0);
  free(err);
  d = parse("a: 1\n---\nkey: value\n  bad: indent\n", &err);
  CHECK(d == NULL);
  CHECK(err && strstr(err, "t.yaml: document 2: line 4: "));
  free(err);
  d = parse("a: 1\na: 2\n", &err);
  CHECK_EQ_STR(err, "t.yaml: document 1: line 2: key \"a\" already set in map");
  free(err);
  d = parse("- 1\n- 2\n", &err);
  CHECK(err && strstr(err, "must be a mapping"));
  free(err);
  d = parse("x: .inf\n", &err);
  CHECK(err && strstr(err, "cannot be represented in JSON"));
  free(err);
  d = parse("x: !!int abc\n", &err);
  CHECK(err && strstr(err, "cannot decode"));
  free(err);
  /* garbage never crashes */
  const char *junk[] = {"\x01\x02", "{", "[", "a: [", "? [a]\n: 1\n", "&a",
                        "a: |\n\tx", "\"unterminated", "- &a\n- *a\n",
                        "%YAML 9.9\n---\na: 1\n", NULL};
  for (int i = 0; junk[i]; i++) {
    d = parse(junk[i], &err);
    cJSON_Delete(d);
    free(err);
  }
}

TEST(parse_one) {
  cJSON *o = NULL;
  char *err = NULL;
  const char *y = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n"
                  "data:\n  size: \"3\"\n";
  CHECK_EQ_INT(kl_manifest_parse_one(y, strlen(y), &o, &err), 0);
  CHECK(tu_json_same(o, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                "{\"name\":\"ssa\"},\"data\":{\"size\":\"3\"}}"));
  cJSON_Delete(o);
  const char *two = "a: 1\n---\nb: 2\n";
  CHECK_EQ_INT(kl_manifest_parse_one(two, strlen(two), &o, &err), KL_EINVAL);
  CHECK(err && strstr(err, "found 2"));
  free(err);
  CHECK_EQ_INT(kl_manifest_parse_one("", 0, &o, &err), KL_EINVAL);
  free(err);
}

static void write_file(const char *dir, const char *name, const char *s) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  tu_write_file(path, s);
}

TEST(directory_in_name_order) {
  char dir[] = "/tmp/klua-manifest-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  write_file(dir, "b.yaml", "kind: B\n---\nkind: B2\n");
  write_file(dir, "a.json", "{\"kind\":\"A\"}");
  write_file(dir, "c.yml", "kind: List\nitems:\n- kind: C1\n- kind: C2\n");
  write_file(dir, "notes.txt", "not: loaded\n");
  cJSON *all = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_manifest_load(dir, KL_MANIFEST_EXPAND_LISTS, &all, &err), 0);
  CHECK(tu_json_same(all, "[{\"kind\":\"A\"},{\"kind\":\"B\"},{\"kind\":\"B2\"},"
                  "{\"kind\":\"C1\"},{\"kind\":\"C2\"}]"));
  cJSON_Delete(all);
  /* a single file; without EXPAND_LISTS the List stays */
  char path[600];
  snprintf(path, sizeof path, "%s/c.yml", dir);
  CHECK_EQ_INT(kl_manifest_load(path, 0, &all, &err), 0);
  CHECK_EQ_INT(cJSON_GetArraySize(all), 1);
  cJSON_Delete(all);
  /* a broken file is named in the error */
  write_file(dir, "d.yaml", "ok: 1\n---\nbad: [\n");
  CHECK_EQ_INT(kl_manifest_load(dir, 0, &all, &err), KL_EINVAL);
  CHECK(err && strstr(err, "/d.yaml: document 2: line "));
  free(err);
  snprintf(path, sizeof path, "%s/missing.yaml", dir);
  CHECK_EQ_INT(kl_manifest_load(path, 0, &all, &err), KL_EIO);
  CHECK(err && strstr(err, "No such file"));
  free(err);
  const char *names[] = {"a.json", "b.yaml", "c.yml", "notes.txt", "d.yaml"};
  for (int i = 0; i < 5; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

TEST(yaml_emitter_round_trips) {
  const char *js =
      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
      "\"x\",\"labels\":{\"app\":\"web\"}},\"data\":{\"num\":\"42\","
      "\"bool\":\"true\",\"empty\":\"\",\"multi\":\"a\\nb\\n\",\"colon\":"
      "\"a: b\",\"dash\":\"-x\"},\"list\":[1,\"two\",{\"k\":\"v\",\"n\":null},"
      "[],{}],\"f\":1.5,\"t\":false}";
  cJSON *v = cJSON_Parse(js);
  char *y = kl_yaml_emit(v);
  cJSON *back = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_manifest_parse_one(y, strlen(y), &back, &err), 0);
  if (err) printf("  %s\n%s", err, y);
  CHECK(tu_json_same(back, js));
  CHECK(strstr(y, "kind: ConfigMap\n") != NULL);
  CHECK(strstr(y, "num: \"42\"\n") != NULL);
  free(err);
  free(y);
  cJSON_Delete(back);
  cJSON_Delete(v);
}

int main(void) {
  RUN(multi_document_stream);
  RUN(typed_scalars);
  RUN(anchors_and_merge_keys);
  RUN(json_input);
  RUN(errors_name_file_document_line);
  RUN(parse_one);
  RUN(directory_in_name_order);
  RUN(yaml_emitter_round_trips);
  return ctest_summary();
}
