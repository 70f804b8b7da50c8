/* manifest.h: loads Kubernetes manifests into cJSON objects: YAML streams
 * of several documents, JSON files, or a directory of .yaml, .yml and .json
 * files (read in name order), and single YAML/JSON bodies
 * (application/apply-patch+yaml). YAML scalars are typed the way
 * Kubernetes' YAML decoder (sigs.k8s.io/yaml, YAML 1.1-ish) types them.
 * Also a small cJSON -> YAML emitter. Used by `klua serve` (apply bodies,
 * seed manifests), the CLI and tests. Thread-safety: pure functions. */
#ifndef KL_MANIFEST_H
#define KL_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "kl.h"

/* Flags for the loaders. */
enum {
  /* replace a document of kind "List" (or any kind ending in "List" with an
   * items array) by its items, as kubectl apply -f does */
  KL_MANIFEST_EXPAND_LISTS = 1 << 0,
};

/* Parses a stream of YAML documents ("---" separated; JSON is YAML) from
 * text[0..n). name labels error messages (e.g. the file name; NULL gives
 * "<input>"). Empty documents (only comments, or "---" twice) are skipped;
 * a document that is not a mapping is an error. Typing of plain scalars
 * (as yaml.v2, which sigs.k8s.io/yaml uses): null, ~ and empty -> null;
 * true/false, yes/no, on/off, y/n (any of lower, Title, UPPER case) ->
 * booleans; decimal, 0x hex, 0o/0 octal, 0b binary integers (with '_'
 * separators) and floats -> numbers (JSON cannot hold .inf/.nan: error);
 * anything quoted, tagged !!str or in a block literal -> a string; dates
 * stay strings. Mapping keys are kept as written ("1: x" has key "1").
 * Anchors and aliases are supported (aliases are deep copies; at most
 * 10000 alias expansions, against "billion laughs"); merge keys
 * ("<<") are supported for mappings. Duplicate keys are an error, as in
 * sigs.k8s.io/yaml.
 * Returns 0 and a NEW cJSON array of the documents in *out, or KL_EINVAL
 * with a NEW message in *err: "<name>: document 2: line 7: mapping values
 * are not allowed in this context". */
int kl_manifest_parse(const char *text, size_t n, const char *name,
                      int flags, cJSON **out, char **err);

/* Parses a body that must hold exactly one YAML or JSON document (an
 * apply-patch+yaml body). Returns 0 and a NEW object in *out, or KL_EINVAL
 * with a NEW message (zero documents, several, not a mapping, bad YAML). */
int kl_manifest_parse_one(const char *text, size_t n, cJSON **out,
                          char **err);

/* Loads a file (any extension; YAML or JSON) or a directory (its .yaml,
 * .yml and .json entries, not recursive, sorted by name with strcmp).
 * Returns 0 and a NEW cJSON array of all documents in order, or KL_EIO
 * (cannot read; message names the path and strerror) or KL_EINVAL (parse
 * error; message names the file, the document index (1-based) and the
 * line). */
int kl_manifest_load(const char *path, int flags, cJSON **out, char **err);

/* Emits v as block-style YAML (a document without "---"). Strings that
 * would be read back as another type, or that need it, are double-quoted;
 * multi-line strings use "|" literals. Returns a NEW string (free it). */
char *kl_yaml_emit(const cJSON *v);

#endif
