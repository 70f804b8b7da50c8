/* selector.h: Kubernetes label selectors and field selectors: parsing (the
 * query-string syntax and the LabelSelector JSON object), matching against
 * objects without allocating, and a canonical string form for cache keys.
 * Used by the local API server (list/watch filtering), the informer and the
 * Lua helpers. Thread-safety: a parsed selector is immutable; any number of
 * threads may match with it at once. Parsing allocates; matching does not. */
#ifndef KL_SELECTOR_H
#define KL_SELECTOR_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "object.h"

/* ---- label selectors ------------------------------------------------- */

typedef struct kl_selector kl_selector;

/* Operators of one requirement, as in k8s.io/apimachinery/pkg/labels. */
typedef enum kl_sel_op {
  KL_SEL_EQ,        /* a=b, a==b */
  KL_SEL_NEQ,       /* a!=b (also true when a is absent) */
  KL_SEL_IN,        /* a in (x,y) */
  KL_SEL_NOTIN,     /* a notin (x,y) (also true when a is absent) */
  KL_SEL_EXISTS,    /* a */
  KL_SEL_NOTEXISTS, /* !a */
  KL_SEL_GT,        /* a>5 (integer comparison, as labels.Parse allows) */
  KL_SEL_LT,        /* a<5 */
} kl_sel_op;

/* Parses the labelSelector query syntax ("app=web,tier notin (a,b),!env").
 * An empty or all-whitespace string gives a selector that matches
 * everything. Keys and values are validated as Kubernetes does (optional
 * DNS-1123 subdomain prefix and '/', a name of at most 63 characters
 * [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?; values at most 63 characters
 * of the same alphabet, or empty).
 * Returns 0 and a NEW selector in *out (free with kl_selector_free), or
 * KL_EINVAL with a NEW message in *err (free it; err may be NULL) worded as
 * kube-apiserver words it, e.g. "unable to parse requirement: found '=',
 * expected: identifier"; the API server answers it as 400 BadRequest. */
int kl_selector_parse(const char *s, kl_selector **out, char **err);

/* Builds a selector from a metav1.LabelSelector JSON object span
 * ({"matchLabels":{...},"matchExpressions":[{"key","operator","values"}]},
 * operators In, NotIn, Exists, DoesNotExist). As LabelSelectorAsSelector:
 * JSON null gives a selector that matches NOTHING, {} one that matches
 * everything. Returns 0 and a NEW selector, or KL_EINVAL/KL_EJSON with a
 * NEW message in *err (e.g. "values: Invalid value: []string(nil): for 'in',
 * 'notin' operators, values set can't be empty"). */
int kl_selector_from_json(kl_span labelselector, kl_selector **out,
                          char **err);
/* The same from a cJSON tree (NULL or cJSON null: matches nothing). */
int kl_selector_from_cjson(const cJSON *labelselector, kl_selector **out,
                           char **err);

/* Frees a selector (NULL-safe). */
void kl_selector_free(kl_selector *sel);

/* True when the selector matches every object (no requirements). */
bool kl_selector_empty(const kl_selector *sel);
/* True when the selector matches no object (from a null LabelSelector). */
bool kl_selector_matches_nothing(const kl_selector *sel);

/* Matching. None of these allocate. A NULL selector matches everything.
 * labels: the span of a metadata.labels object; an empty span (p == NULL)
 * or JSON null means "no labels". Non-string label values are ignored. */
bool kl_selector_matches_labels(const kl_selector *sel, kl_span labels);
/* obj: the span of a whole object (reads metadata.labels). */
bool kl_selector_matches_json(const kl_selector *sel, kl_span obj);
bool kl_selector_matches_obj(const kl_selector *sel, const kl_obj *obj);
/* obj: a whole object as a cJSON tree (reads metadata.labels). */
bool kl_selector_matches_cjson(const kl_selector *sel, const cJSON *obj);

/* Returns a NEW canonical string (free it): requirements sorted by key then
 * operator, in/notin values sorted and deduplicated, "==" written "=";
 * "" for match-everything. Two selectors that select the same way by the
 * same requirements give the same string, so it serves as a cache key.
 * A match-nothing selector gives "<none>"; it does not parse back. */
char *kl_selector_string(const kl_selector *sel);

/* Number of requirements and a borrowed view of one (valid while sel
 * lives): key, operator, and values (nvalues of them, sorted). */
size_t kl_selector_count(const kl_selector *sel);
void kl_selector_requirement(const kl_selector *sel, size_t i,
                             const char **key, kl_sel_op *op,
                             const char *const **values, size_t *nvalues);

/* ---- field selectors ------------------------------------------------- */

typedef struct kl_fieldsel kl_fieldsel;

/* Parses the fieldSelector query syntax: comma-separated terms
 * "path=value", "path==value" or "path!=value" (AND). Paths are dotted
 * member paths of the object ("metadata.name", "spec.nodeName",
 * "status.phase"); values may escape ',', '=' and '\' with a
 * backslash, as fields.ParseSelector does. Empty string: matches
 * everything. Which paths are allowed per resource is the caller's call
 * (the API server checks kl_fieldsel_field against its list and answers
 * 400 "\"data.k\" is not a known field selector: only \"metadata.name\",
 * \"metadata.namespace\""). Returns 0 and a NEW selector, or KL_EINVAL and
 * a NEW message in *err (e.g. "invalid selector: 'foo'; can't understand
 * 'foo'"). */
int kl_fieldsel_parse(const char *s, kl_fieldsel **out, char **err);
void kl_fieldsel_free(kl_fieldsel *fs);
bool kl_fieldsel_empty(const kl_fieldsel *fs);

/* Borrowed views of term i (valid while fs lives). */
size_t kl_fieldsel_count(const kl_fieldsel *fs);
const char *kl_fieldsel_field(const kl_fieldsel *fs, size_t i);
const char *kl_fieldsel_value(const kl_fieldsel *fs, size_t i);
bool kl_fieldsel_negated(const kl_fieldsel *fs, size_t i); /* true: != */

/* Matching (no allocation; NULL fs matches everything). A field's value is
 * its string (unescaped), number text, "true"/"false"; absent or null reads
 * as "" (so "spec.nodeName=" selects unscheduled pods, as in Kubernetes);
 * an object or array value equals nothing. */
bool kl_fieldsel_matches_json(const kl_fieldsel *fs, kl_span obj);
bool kl_fieldsel_matches_obj(const kl_fieldsel *fs, const kl_obj *obj);
bool kl_fieldsel_matches_cjson(const kl_fieldsel *fs, const cJSON *obj);

/* Returns a NEW canonical string (terms sorted, "==" written "=", values
 * re-escaped); "" for match-everything. */
char *kl_fieldsel_string(const kl_fieldsel *fs);

#endif
