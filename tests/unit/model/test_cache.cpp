/* The embedding cache (model/cache.cpp): LRU eviction by bytes, hits and misses, keys separated by
 * model fingerprint and convention, replacement, refusal of an entry larger than the cache, and
 * concurrent use from several threads. Uses a tiny random-weight model (no fixture needed). */
#include "check.h"
#include "model.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string g_config;

samda_model *tiny(uint64_t seed, samda_model_convention conv)
{
    samda_model_params p;
    samda_model_params_init(&p);
    p.arch = "custom";
    p.config_path = g_config.c_str();
    p.random_weights = 1;
    p.seed = seed;
    p.device = SAMDA_MODEL_DEVICE_CPU;
    p.convention = conv;
    samda_error err{};
    samda_model *m = samda_model_open(&p, &err);
    if (!m)
        fprintf(stderr, "open: %s\n", err.message);
    return m;
}

samda_embedding *make_emb(samda_model *m, float fill)
{
    std::vector<float> d(256 * 16 * 16, fill);
    return samda_model_embedding_from_data(m, d.data(), d.size(), 100, 100, 256, 256, nullptr);
}

float first_value(samda_embedding *e)
{
    std::vector<float> d(256 * 16 * 16);
    samda_embedding_copy_data(e, d.data(), d.size(), nullptr);
    return d[0];
}

void test_lru()
{
    samda_model *m = tiny(1, SAMDA_MODEL_CONVENTION_SAM);
    samda_model *other = tiny(2, SAMDA_MODEL_CONVENTION_SAM);
    samda_model *med = tiny(1, SAMDA_MODEL_CONVENTION_MEDSAM);
    CHECK(m && other && med);
    if (!m || !other || !med)
        return;
    samda_embedding *a = make_emb(m, 1), *b = make_emb(m, 2), *c = make_emb(m, 3), *d = make_emb(m, 4);
    samda_embedding_info info{};
    samda_embedding_get_info(a, &info);
    CHECK_EQ(info.bytes, (size_t)256 * 16 * 16 * 4);
    const size_t one = info.bytes;

    samda_error err{};
    CHECK(samda_embedding_cache_new(0, &err) == nullptr);
    CHECK_EQ(err.code, SAMDA_EINVAL);
    samda_embedding_cache *cache = samda_embedding_cache_new(one * 5 / 2, &err);  // room for two
    CHECK(cache != nullptr);
    if (!cache)
        return;
    CHECK_EQ(samda_embedding_cache_put(cache, "a", a, &err), SAMDA_OK);
    CHECK_EQ(samda_embedding_cache_put(cache, "b", b, &err), SAMDA_OK);
    samda_embedding *got = samda_embedding_cache_get(cache, m, "a");  // a becomes most recent
    CHECK(got != nullptr);
    if (got) {
        CHECK_EQ(first_value(got), 1.0f);
        samda_embedding_release(got);
    }
    CHECK_EQ(samda_embedding_cache_put(cache, "c", c, &err), SAMDA_OK);  // evicts b (least recent)
    got = samda_embedding_cache_get(cache, m, "b");
    CHECK(got == nullptr);
    got = samda_embedding_cache_get(cache, m, "a");
    CHECK(got != nullptr);
    samda_embedding_release(got);
    got = samda_embedding_cache_get(cache, m, "c");
    CHECK(got != nullptr);
    samda_embedding_release(got);

    // The same key under another model or another convention is another entry.
    CHECK(samda_embedding_cache_get(cache, other, "a") == nullptr);
    CHECK(samda_embedding_cache_get(cache, med, "a") == nullptr);

    // Replacing a key keeps one entry.
    CHECK_EQ(samda_embedding_cache_put(cache, "a", d, &err), SAMDA_OK);
    got = samda_embedding_cache_get(cache, m, "a");
    CHECK(got != nullptr);
    if (got) {
        CHECK_EQ(first_value(got), 4.0f);
        samda_embedding_release(got);
    }
    samda_embedding_cache_stats st{};
    samda_embedding_cache_get_stats(cache, &st);
    CHECK_EQ(st.entries, (size_t)2);
    CHECK_EQ(st.bytes, 2 * one);
    CHECK_EQ(st.max_bytes, one * 5 / 2);
    CHECK_EQ(st.hits, (uint64_t)4);
    CHECK_EQ(st.misses, (uint64_t)3);
    CHECK_EQ(st.insertions, (uint64_t)4);
    CHECK_EQ(st.evictions, (uint64_t)1);

    // Bad arguments; an entry larger than the cache is refused.
    CHECK_EQ(samda_embedding_cache_put(cache, "", a, &err), SAMDA_EINVAL);
    CHECK_EQ(samda_embedding_cache_put(cache, nullptr, a, &err), SAMDA_EINVAL);
    CHECK_EQ(samda_embedding_cache_put(nullptr, "x", a, &err), SAMDA_EINVAL);
    std::string long_key(2000, 'k');
    CHECK_EQ(samda_embedding_cache_put(cache, long_key.c_str(), a, &err), SAMDA_EINVAL);
    samda_embedding_cache *small = samda_embedding_cache_new(one - 1, &err);
    CHECK_EQ(samda_embedding_cache_put(small, "a", a, &err), SAMDA_ETOOBIG);
    samda_embedding_cache_free(small);

    // The cache holds its own references: the caller's release does not free cached embeddings.
    samda_embedding_release(a);
    samda_embedding_release(b);
    samda_embedding_release(c);
    samda_embedding_release(d);
    got = samda_embedding_cache_get(cache, m, "c");
    CHECK(got != nullptr);
    if (got) {
        CHECK_EQ(first_value(got), 3.0f);
        samda_embedding_release(got);
    }
    samda_embedding_cache_free(cache);
    samda_embedding_cache_free(nullptr);
    samda_model_close(m);
    samda_model_close(other);
    samda_model_close(med);
}

void test_threads()
{
    samda_model *m = tiny(1, SAMDA_MODEL_CONVENTION_SAM);
    if (!m)
        return;
    std::vector<samda_embedding *> embs;
    for (int i = 0; i < 8; i++)
        embs.push_back(make_emb(m, (float)i));
    samda_embedding_info info{};
    samda_embedding_get_info(embs[0], &info);
    samda_embedding_cache *cache = samda_embedding_cache_new(info.bytes * 4, nullptr);
    std::atomic<int> gets{0}, bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&, t]() {
            for (int i = 0; i < 2000; i++) {
                const int k = (i * 7 + t) % 8;
                const std::string key = "k" + std::to_string(k);
                if (i % 3 == 0) {
                    if (samda_embedding_cache_put(cache, key.c_str(), embs[k], nullptr) != SAMDA_OK)
                        bad++;
                } else {
                    samda_embedding *e = samda_embedding_cache_get(cache, m, key.c_str());
                    gets++;
                    if (e) {
                        samda_embedding_info in{};
                        samda_embedding_get_info(e, &in);
                        if (in.bytes != info.bytes)
                            bad++;
                        samda_embedding_release(e);
                    }
                }
            }
        });
    for (auto &t : ts)
        t.join();
    samda_embedding_cache_stats st{};
    samda_embedding_cache_get_stats(cache, &st);
    CHECK_EQ(bad.load(), 0);
    CHECK_EQ(st.hits + st.misses, (uint64_t)gets.load());
    CHECK(st.entries <= 4);
    CHECK(st.bytes <= st.max_bytes);
    CHECK_EQ(st.bytes, st.entries * info.bytes);
    printf("threads: %llu hits, %llu misses, %llu evictions\n", (unsigned long long)st.hits,
           (unsigned long long)st.misses, (unsigned long long)st.evictions);
    samda_embedding_cache_free(cache);
    for (auto *e : embs)
        samda_embedding_release(e);
    samda_model_close(m);
}

}  // namespace

int main()
{
    char tmpl[] = "/tmp/samda_test_cache_XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return 1;
    const char *cfg = "{\"image_encoder\": {\"img_size\": 256, \"embed_dim\": 96, \"depth\": 2, \"num_heads\": 4, "
                      "\"global_attn_indexes\": [1], \"window_size\": 7}}";
    if (write(fd, cfg, std::strlen(cfg)) != (ssize_t)std::strlen(cfg))
        return 1;
    close(fd);
    g_config = tmpl;
    RUN(test_lru);
    RUN(test_threads);
    unlink(tmpl);
    return samda_test::summary();
}
