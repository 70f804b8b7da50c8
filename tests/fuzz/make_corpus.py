#!/usr/bin/env python3
"""Regenerates tests/fuzz/corpus/ from /work/shared/k8s-wire (real
kube-apiserver v1.20.2 captures) plus hand-written cases. Run from the repo
root; it overwrites the files it writes and leaves others alone. Keep the
corpus small: libFuzzer grows its own copy in a scratch directory."""
import base64, json, os, sys

WIRE = os.environ.get("K8S_WIRE", "/work/shared/k8s-wire")
OUT = "tests/fuzz/corpus"


def body(path, which="response"):
    """The body of one side of a .http capture (bytes)."""
    data = open(os.path.join(WIRE, path), "rb").read()
    req, _, resp = data.partition(b"=== response\n")
    part = resp if which == "response" else req.partition(b"=== request\n")[2]
    head, _, b = part.partition(b"\n\n")
    return b


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    # watch streams (de-chunked bodies), one per protocol feature
    for n in ["cm_rv1_too_old", "bookmark_10s", "cm_fieldselector_name",
              "cm_labelselector", "cm_table_watch", "cm_metadata_only",
              "widgets_from_list_rv", "cm_timeout2_empty"]:
        put("fuzz_watch_decode", n, body("watch/%s.http" % n))
    put("fuzz_watch_decode", "hand_split_lines",
        '{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}}'
        '{"type":"DELETED","object":{"metadata":{"name":"a","namespace":"n"}}}\n'
        '  {"type":"MODIFIED",\n  "object":{"metadata":{"name":"b\\u00e9"}}}\n')
    put("fuzz_watch_decode", "hand_truncated",
        '{"type":"ADDED","object":{"metadata":{"name":"a"\n{"type":"ADDED"}\n')

    # list bodies
    for n in ["configmaps_limit3_page1", "configmaps_partialobjectmetadatalist",
              "configmaps_rv0_limit3", "configmaps_table"]:
        put("fuzz_list_decode", n, body("list/%s.http" % n))
    put("fuzz_list_decode", "hand_cr_order",
        '{"apiVersion":"example.com/v1","items":[{"metadata":{"name":"w"}}],'
        '"kind":"WidgetList","metadata":{"continue":"x","remainingItemCount":2,'
        '"resourceVersion":"9"}}')
    put("fuzz_list_decode", "hand_null_items",
        '{"kind":"PodList","apiVersion":"v1","metadata":{},"items":null}')

    # Status bodies
    for n in ["404_get_missing", "410_continue_expired", "409_conflict_stale_rv",
              "422_invalid_multiple_causes", "429_dummy"]:
        if os.path.exists(os.path.join(WIRE, "errors/%s.http" % n)):
            put("fuzz_status", n, body("errors/%s.http" % n))
    put("fuzz_status", "hand_http_plain", b"\x01\x94\x00404 page not found\n")
    put("fuzz_status", "hand_retry_after",
        b"\x01\xad\x0130\x00" + body("errors/404_get_missing.http"))

    # kubeconfigs: the test fixtures without external files
    for n in ["a.yaml", "b.yaml", "exec.yaml", "noserver.yaml", "bad.yaml"]:
        p = os.path.join("tests/fixtures/kubeconfig", n)
        if os.path.exists(p):
            put("fuzz_kubeconfig", n, open(p, "rb").read())
    put("fuzz_kubeconfig", "hand_inline",
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\nclusters:\n"
        "- name: c\n  cluster:\n    server: https://h:6443/\n"
        "    certificate-authority-data: " + base64.b64encode(b"PEM").decode() +
        "\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n"
        "    token: t\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n"
        "    user: u\n    namespace: ns\n")

    # selectors: selector NUL object
    obj = '{"metadata":{"labels":{"app":"web","tier":"front","n":"5"}}}'
    for i, s in enumerate(["app=web,tier!=back", "app in (web,db),!env",
                           "n>3,n<10", "example.com/x", "app notin (a,b)",
                           "x=,y==z", "  ", "app=web,"]):
        put("fuzz_label_selector", "sel%d" % i, s + "\0" + obj)
    put("fuzz_label_selector", "json_ls",
        '{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier",'
        '"operator":"In","values":["front","b"]},{"key":"x","operator":"Exists"}]}')
    put("fuzz_label_selector", "json_null", "null")
    fobj = ('{"metadata":{"name":"a","namespace":"ns"},"spec":{"nodeName":"",'
            '"replicas":3},"status":{"phase":"Running"}}')
    for i, s in enumerate(["metadata.name=a", "metadata.namespace!=kube-system,"
                           "status.phase==Running", "spec.nodeName=",
                           "metadata.name=a\\,b\\=c", "spec.replicas=3", "foo"]):
        put("fuzz_field_selector", "sel%d" % i, s + "\0" + fobj)

    # patches: target NUL patch
    cm = json.dumps(json.loads(body("writes/cm_get.http")), separators=(",", ":"))
    put("fuzz_json_patch", "wire_ops",
        cm + "\0" + body("writes/cm_json_patch.http", "request").decode())
    put("fuzz_json_patch", "hand_ops",
        '{"a":[1,2],"b":{"c~d":1,"e/f":2}}\0[{"op":"add","path":"/a/-","value":3},'
        '{"op":"remove","path":"/b/c~0d"},{"op":"copy","from":"/b/e~1f","path":"/x"},'
        '{"op":"move","from":"/a/0","path":"/y"},{"op":"test","path":"/x","value":2},'
        '{"op":"replace","path":"/z","value":null}]')
    put("fuzz_json_patch", "hand_bad", '{}\0{"op":"add"}')
    put("fuzz_merge_patch", "wire",
        cm + "\0" + body("writes/cm_merge_patch.http", "request").decode())
    put("fuzz_merge_patch", "hand", '{"a":{"b":1,"c":[1]},"d":2}\0{"a":{"b":null,"e":{}},"d":[]}')
    put("fuzz_merge_patch", "hand_scalar", '[1]\0"x"')
    pod = ('{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","finalizers":'
           '["a"]},"spec":{"containers":[{"name":"app","image":"x","ports":'
           '[{"containerPort":80}],"env":[{"name":"A","value":"1"}]}]}}')
    put("fuzz_strategic_patch", "wire_cm",
        cm + "\0" + body("writes/cm_strategic_merge_patch.http", "request").decode())
    put("fuzz_strategic_patch", "hand_pod", pod + "\0" +
        '{"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]},"spec":'
        '{"containers":[{"name":"app","image":"y","$patch":"merge"},'
        '{"name":"side","image":"z"}],"$setElementOrder/containers":'
        '[{"name":"side"},{"name":"app"}]}}')
    put("fuzz_strategic_patch", "hand_replace",
        pod + "\0" + '{"spec":{"containers":[{"$patch":"replace"},{"name":"n"}],"$patch":"replace"}}')
    put("fuzz_strategic_patch", "hand_apply",
        '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","managedFields":'
        '[{"manager":"other","operation":"Apply","apiVersion":"v1","fieldsType":'
        '"FieldsV1","fieldsV1":{"f:data":{"f:k":{}}}}]},"data":{"k":"v"}}\0'
        '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"w","j":"x"}}')

    # manifests
    put("fuzz_manifest", "wire_apply_yaml", body("writes/ssa_apply_x_create.http", "request"))
    put("fuzz_manifest", "hand_multi",
        "# c\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
        "data:\n  a: yes\n  b: '0x1F'\n  c: 0o17\n  d: 1_000\n  e: |\n    x\n    y\n"
        "  f: ~\n---\n---\nkind: List\nitems:\n- {kind: A, metadata: {name: b}}\n")
    put("fuzz_manifest", "hand_anchors",
        "base: &b {x: 1, y: [a, b]}\nmerged:\n  <<: *b\n  z: !!str 3\n"
        "date: 2024-01-01\nf: 1.5e3\nn: .inf\n")
    put("fuzz_manifest", "hand_json", '{"kind":"Pod","metadata":{"name":"p"},"spec":{}}')

    # protobuf: real kubectl bodies
    for n in ["create_configmap.request.bin", "create_namespace.request.bin"]:
        put("fuzz_protobuf", n, open(os.path.join("tests/fixtures/protobuf", n), "rb").read())

    # JSON documents
    docs = {
        "cm": cm,
        "escapes": '{"a\\u00e9":"\\ud83d\\ude00\\n\\t\\"\\\\\\/","b":[-0.5e+3,0,1E2,true,false,null]}',
        "deep": "[" * 40 + "]" * 40,
        "ws": ' \n\t{ "a" : [ 1 , { } , [ ] ] }\r\n',
        "big_int": '[12345678901234567890123,-9007199254740993,1e400]',
        "lone_surrogate": '"\\udc00\\ud800x"',
        "bad_trailing": '{"a":1}x',
    }
    for k, v in docs.items():
        put("fuzz_json_scanner", k, v)
        put("fuzz_json_to_lua", k, v)


if __name__ == "__main__":
    main()
