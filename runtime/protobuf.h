/* protobuf.h: decodes Kubernetes protobuf request bodies (Content-Type
 * application/vnd.kubernetes.protobuf: the 4-byte "k8s\0" magic, then a
 * runtime.Unknown wrapping typeMeta and the raw object) into the JSON tree
 * the same object would have in application/json. kubectl's typed commands
 * (create namespace/configmap/secret/serviceaccount) send such bodies.
 * Supported kinds (core v1): Namespace, ConfigMap, Secret, ServiceAccount.
 * Used by the local API server. Thread-safety: pure functions. Every read
 * is bounds-checked; malformed input gives an error, never a crash. */
#ifndef KL_PROTOBUF_H
#define KL_PROTOBUF_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "kl.h"

/* The content type kube-apiserver uses for protobuf. */
#define KL_PROTOBUF_CONTENT_TYPE "application/vnd.kubernetes.protobuf"

/* Decodes one protobuf body (magic + runtime.Unknown) of n bytes.
 * Returns 0 and a NEW cJSON object in *out ({"kind","apiVersion",
 * "metadata":{...},...} with JSON field names, []byte fields base64,
 * times as RFC 3339 "2026-11-24T02:40:27Z"), or
 *   KL_EPROTO: malformed (no magic, truncated, bad wire type, invalid
 *              UTF-8 is NOT checked) -> the server answers 400 BadRequest;
 *   KL_EINVAL: a well-formed envelope of an unsupported kind or a
 *              contentEncoding other than "" -> 415 UnsupportedMediaType.
 * On error *err (when err is not NULL) is a NEW message naming the cause
 * ("protobuf: ConfigMap.metadata: field 3: truncated length-delimited
 * value", "protobuf: apps/v1 Deployment is not supported; send JSON"). */
int kl_protobuf_decode(const void *body, size_t n, cJSON **out, char **err);

/* True when kl_protobuf_decode handles apiVersion/kind. */
bool kl_protobuf_supported(const char *api_version, const char *kind);

#endif
