/* hmap.c: see hmap.h. Linear probing at load <= 0.7; FNV-1a hashing. */
#include "hmap.h"

#include <stdlib.h>
#include <string.h>

#include "kl.h"

uint64_t kl_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h ? h : 1;
}

void kl_hmap_init(kl_hmap *m, bool own_keys) {
  m->slots = NULL;
  m->cap = m->len = 0;
  m->own_keys = own_keys;
}

void kl_hmap_free(kl_hmap *m) {
  if (m->own_keys)
    for (size_t i = 0; i < m->cap; i++)
      if (m->slots[i].key) free((char *)m->slots[i].key);
  free(m->slots);
  m->slots = NULL;
  m->cap = m->len = 0;
}

static size_t find(const kl_hmap *m, const char *key, uint64_t h) {
  size_t mask = m->cap - 1, i = h & mask;
  for (;;) {
    const kl_hmap_slot *s = &m->slots[i];
    if (!s->key || (s->hash == h && strcmp(s->key, key) == 0)) return i;
    i = (i + 1) & mask;
  }
}

static void grow(kl_hmap *m) {
  size_t ncap = m->cap ? m->cap * 2 : 8;
  kl_hmap_slot *old = m->slots;
  size_t ocap = m->cap;
  m->slots = kl_calloc(ncap, sizeof *m->slots);
  m->cap = ncap;
  for (size_t i = 0; i < ocap; i++) {
    if (!old[i].key) continue;
    size_t j = old[i].hash & (ncap - 1);
    while (m->slots[j].key) j = (j + 1) & (ncap - 1);
    m->slots[j] = old[i];
  }
  free(old);
}

void *kl_hmap_get(const kl_hmap *m, const char *key) {
  if (!m->len) return NULL;
  size_t i = find(m, key, kl_hash(key));
  return m->slots[i].key ? m->slots[i].val : NULL;
}

bool kl_hmap_has(const kl_hmap *m, const char *key) {
  if (!m->len) return false;
  return m->slots[find(m, key, kl_hash(key))].key != NULL;
}

void *kl_hmap_put(kl_hmap *m, const char *key, void *val) {
  if ((m->len + 1) * 10 > m->cap * 7) grow(m);
  uint64_t h = kl_hash(key);
  size_t i = find(m, key, h);
  kl_hmap_slot *s = &m->slots[i];
  if (s->key) {
    void *prev = s->val;
    s->val = val;
    if (!m->own_keys) s->key = key;
    return prev;
  }
  s->key = m->own_keys ? kl_strdup(key) : key;
  s->hash = h;
  s->val = val;
  m->len++;
  return NULL;
}

void *kl_hmap_del(kl_hmap *m, const char *key, bool *found) {
  if (found) *found = false;
  if (!m->len) return NULL;
  size_t mask = m->cap - 1, i = find(m, key, kl_hash(key));
  if (!m->slots[i].key) return NULL;
  void *val = m->slots[i].val;
  if (m->own_keys) free((char *)m->slots[i].key);
  m->len--;
  if (found) *found = true;
  /* backward-shift: pull later members of the probe run into the hole */
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!m->slots[j].key) break;
    size_t home = m->slots[j].hash & mask;
    /* can slot j move to i? only if home is not cyclically in (i, j] */
    bool stay = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (stay) continue;
    m->slots[i] = m->slots[j];
    i = j;
  }
  m->slots[i].key = NULL;
  m->slots[i].val = NULL;
  return val;
}

bool kl_hmap_next(const kl_hmap *m, size_t *i, const char **key, void **val) {
  while (*i < m->cap) {
    const kl_hmap_slot *s = &m->slots[(*i)++];
    if (s->key) {
      if (key) *key = s->key;
      if (val) *val = s->val;
      return true;
    }
  }
  return false;
}

size_t kl_hmap_footprint(const kl_hmap *m) {
  size_t n = m->cap * sizeof(kl_hmap_slot);
  if (m->own_keys)
    for (size_t i = 0; i < m->cap; i++)
      if (m->slots[i].key) n += strlen(m->slots[i].key) + 1;
  return n;
}
