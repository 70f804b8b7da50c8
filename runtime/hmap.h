/* hmap.h: an open-addressing hash map from C strings to pointers, with
 * backward-shift deletion (no tombstones, so memory does not creep under
 * churn). Keys are either copied and owned by the map (KL_HMAP_OWN_KEYS) or
 * borrowed (the caller keeps them alive, e.g. a kl_obj's own key).
 * Thread-safety: none; the owner serialises access. */
#ifndef KL_HMAP_H
#define KL_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_hmap_slot {
  const char *key; /* NULL: empty */
  uint64_t hash;
  void *val;
} kl_hmap_slot;

/* Exposed so that it can be embedded in other structs. */
typedef struct kl_hmap {
  kl_hmap_slot *slots;
  size_t cap; /* power of two, or 0 */
  size_t len;
  bool own_keys;
} kl_hmap;

#define KL_HMAP_OWN_KEYS true
#define KL_HMAP_BORROW_KEYS false

void kl_hmap_init(kl_hmap *m, bool own_keys);
/* Frees the slots (and owned keys), not the values. */
void kl_hmap_free(kl_hmap *m);
uint64_t kl_hash(const char *s);

void *kl_hmap_get(const kl_hmap *m, const char *key);
bool kl_hmap_has(const kl_hmap *m, const char *key);
/* Inserts or replaces. Returns the previous value (NULL if none). When the
 * key exists and keys are borrowed, the stored key pointer is replaced by
 * key (so it can follow a new owner). */
void *kl_hmap_put(kl_hmap *m, const char *key, void *val);
/* Removes key; returns its value (NULL if absent), and sets *found. */
void *kl_hmap_del(kl_hmap *m, const char *key, bool *found);
static inline size_t kl_hmap_len(const kl_hmap *m) { return m->len; }

/* Iteration: for (size_t i = 0; kl_hmap_next(m, &i, &k, &v);) ...
 * Do not modify the map while iterating. */
bool kl_hmap_next(const kl_hmap *m, size_t *i, const char **key, void **val);
/* Heap bytes the map itself uses (slots and owned keys). */
size_t kl_hmap_footprint(const kl_hmap *m);

#endif
