// model/sha256.h: SHA-256 (FIPS 180-4), for model fingerprints. No dependencies.
#ifndef SAMDA_MODEL_SHA256_H
#define SAMDA_MODEL_SHA256_H

#include <cstddef>
#include <cstdint>
#include <string>

namespace samda {

// ---------------------------------------------------------------------------------------------
// SHA-256 (sha256.cpp)

class Sha256 {
public:
    Sha256();
    void update(const void *data, size_t n);
    std::string hex_digest();  // 64 lowercase hex characters; finalises
private:
    void block(const unsigned char *p);
    uint32_t h_[8];
    unsigned char buf_[64];
    size_t buf_len_ = 0;
    uint64_t total_ = 0;
};

}  // namespace samda

#endif
