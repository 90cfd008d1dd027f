// model/cache.cpp: the embedding cache: an LRU of samda_embedding references bounded in bytes,
// keyed by (model fingerprint, input convention, caller's key), safe to share between threads.
// Uses only the C interface of model.h, so it compiles without libtorch headers.
#include "model.h"

#include <cstring>
#include <iterator>
#include <list>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

struct samda_embedding_cache {
    struct Entry {
        std::string key;
        samda_embedding *emb;
        size_t bytes;
    };
    std::mutex mu;
    std::list<Entry> lru;  // front = most recently used
    std::unordered_map<std::string, std::list<Entry>::iterator> index;
    size_t max_bytes = 0, bytes = 0;
    uint64_t hits = 0, misses = 0, insertions = 0, evictions = 0;

    void drop(std::list<Entry>::iterator it)
    {
        bytes -= it->bytes;
        samda_embedding_release(it->emb);
        index.erase(it->key);
        lru.erase(it);
    }
};

namespace {

constexpr size_t kMaxKey = 1024;

std::string full_key(const char *fingerprint, int convention, const char *key)
{
    // Fingerprints are fixed-length hex, so the concatenation is unambiguous.
    std::string k(fingerprint);
    k += '/';
    k += std::to_string(convention);
    k += '/';
    k += key;
    return k;
}

bool key_ok(const char *key) { return key && key[0] && std::strlen(key) <= kMaxKey; }

}  // namespace

extern "C" {

samda_embedding_cache *samda_embedding_cache_new(size_t max_bytes, samda_error *err)
{
    if (max_bytes == 0) {
        samda_fail(err, SAMDA_EINVAL, "creating embedding cache: max_bytes must be at least 1");
        return nullptr;
    }
    auto *c = new (std::nothrow) samda_embedding_cache();
    if (!c) {
        samda_fail(err, SAMDA_ENOMEM, "creating embedding cache: out of memory");
        return nullptr;
    }
    c->max_bytes = max_bytes;
    return c;
}

void samda_embedding_cache_free(samda_embedding_cache *c)
{
    if (!c)
        return;
    for (auto &e : c->lru)
        samda_embedding_release(e.emb);
    delete c;
}

samda_embedding *samda_embedding_cache_get(samda_embedding_cache *c, const samda_model *m, const char *key)
{
    if (!c || !m || !key_ok(key))
        return nullptr;
    samda_model_info info;
    if (samda_model_get_info(m, &info, nullptr) != SAMDA_OK)
        return nullptr;
    try {
        std::string k = full_key(info.fingerprint, (int)info.convention, key);
        std::lock_guard<std::mutex> lock(c->mu);
        auto it = c->index.find(k);
        if (it == c->index.end()) {
            c->misses++;
            return nullptr;
        }
        c->hits++;
        c->lru.splice(c->lru.begin(), c->lru, it->second);
        return samda_embedding_retain(it->second->emb);
    } catch (...) {
        return nullptr;  // out of memory building the key: report a miss
    }
}

samda_status samda_embedding_cache_put(samda_embedding_cache *c, const char *key, samda_embedding *e,
                                       samda_error *err)
{
    if (!c || !e)
        return samda_fail(err, SAMDA_EINVAL, "caching embedding: cache or embedding is NULL");
    if (!key_ok(key))
        return samda_fail(err, SAMDA_EINVAL, "caching embedding: key must be 1..%zu bytes", kMaxKey);
    samda_embedding_info info;
    if (samda_embedding_get_info(e, &info) != SAMDA_OK)
        return samda_fail(err, SAMDA_EINVAL, "caching embedding: embedding is invalid");
    if (info.bytes > c->max_bytes)
        return samda_fail(err, SAMDA_ETOOBIG, "caching embedding: %zu bytes exceed the cache size of %zu bytes",
                          info.bytes, c->max_bytes);
    try {
        std::string k = full_key(info.fingerprint, (int)info.convention, key);
        std::lock_guard<std::mutex> lock(c->mu);
        auto it = c->index.find(k);
        if (it != c->index.end())
            c->drop(it->second);
        while (!c->lru.empty() && c->bytes + info.bytes > c->max_bytes) {
            c->drop(std::prev(c->lru.end()));
            c->evictions++;
        }
        c->lru.push_front({k, samda_embedding_retain(e), info.bytes});
        try {
            c->index[k] = c->lru.begin();
        } catch (...) {
            samda_embedding_release(c->lru.front().emb);
            c->lru.pop_front();
            throw;
        }
        c->bytes += info.bytes;
        c->insertions++;
        return SAMDA_OK;
    } catch (const std::bad_alloc &) {
        return samda_fail(err, SAMDA_ENOMEM, "caching embedding: out of memory");
    } catch (...) {
        return samda_fail(err, SAMDA_EINTERNAL, "caching embedding: unexpected C++ exception");
    }
}

void samda_embedding_cache_get_stats(samda_embedding_cache *c, samda_embedding_cache_stats *out)
{
    if (!c || !out)
        return;
    std::lock_guard<std::mutex> lock(c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->insertions = c->insertions;
    out->evictions = c->evictions;
    out->entries = c->lru.size();
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
}

}  // extern "C"
