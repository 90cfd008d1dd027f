/* model/safetensors.cpp (torch-free): round trip, and every refusal of a malformed file. */
#include "check.h"
#include "safetensors.h"

#include <cstring>
#include <string>
#include <vector>

using namespace samda::safetensors;

namespace {

std::vector<uint8_t> raw(const std::string &header, const std::vector<uint8_t> &payload)
{
    std::vector<uint8_t> out(8);
    uint64_t n = header.size();
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(n >> (8 * i));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

File parse_v(const std::vector<uint8_t> &v) { return parse(v.data(), v.size()); }

void test_round_trip()
{
    std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
    std::vector<uint16_t> b = {0x3C00, 0xC000};
    std::vector<OutTensor> ts(2);
    ts[0].name = "z.weight";
    ts[0].dtype = DType::F32;
    ts[0].shape = {2, 3};
    ts[0].data = a.data();
    ts[0].nbytes = a.size() * 4;
    ts[1].name = "a.bias";
    ts[1].dtype = DType::F16;
    ts[1].shape = {2};
    ts[1].data = b.data();
    ts[1].nbytes = 4;
    std::vector<uint8_t> f = serialize({{"labels", "[{\"name\":\"liver \\\"x\\\"\"}]"}, {"format", "samda-adapter"}}, ts);
    CHECK_EQ((f.size() - 8 - 4 - 24) % 8, 0u);  // header padded to 8
    File p = parse_v(f);
    CHECK_EQ(p.tensors.size(), 2u);
    CHECK_EQ(p.tensors[0].name, std::string("a.bias"));  // sorted by name, packed in that order
    CHECK_EQ(p.tensors[0].begin, 0u);
    CHECK_EQ(p.tensors[1].begin, 4u);
    CHECK(p.find("z.weight") != nullptr);
    CHECK(p.find("nope") == nullptr);
    CHECK_EQ(p.find("z.weight")->shape.size(), 2u);
    CHECK_EQ(std::memcmp(p.payload + p.find("z.weight")->begin, a.data(), 24), 0);
    CHECK_EQ(p.metadata["format"], std::string("samda-adapter"));
    CHECK_EQ(p.metadata["labels"], std::string("[{\"name\":\"liver \\\"x\\\"\"}]"));
    CHECK_EQ(p.metadata["payload_sha256"].size(), 64u);
    verify_payload(p);
    // A flipped payload bit is caught by the checksum.
    std::vector<uint8_t> g = f;
    g.back() ^= 1;
    File q = parse_v(g);
    CHECK_THROWS(verify_payload(q), Error, "does not match");
    // Serialising refuses bad tensors.
    std::vector<OutTensor> bad = ts;
    bad[0].nbytes = 20;
    CHECK_THROWS(serialize({}, bad), Error, "bytes for its dtype");
    bad = ts;
    bad[1].name = "z.weight";
    CHECK_THROWS(serialize({}, bad), Error, "duplicate");
    bad = ts;
    bad[1].name = "__metadata__";
    CHECK_THROWS(serialize({}, bad), Error, "starts with");
    // Zero tensors is a valid file.
    std::vector<uint8_t> empty = serialize({{"k", "v"}}, {});
    CHECK_EQ(parse_v(empty).tensors.size(), 0u);
}

void test_refusals()
{
    const std::vector<uint8_t> p8(8, 0);
    const std::string ok = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    CHECK_EQ(parse_v(raw(ok, p8)).tensors.size(), 1u);
    CHECK_THROWS(parse(nullptr, 0), Error, "shorter than");
    std::vector<uint8_t> s = raw(ok, p8);
    CHECK_THROWS(parse(s.data(), 5), Error, "shorter than");
    CHECK_THROWS(parse(s.data(), 20), Error, "runs past the end");
    std::vector<uint8_t> huge = s;
    huge[7] = 0x7f;
    CHECK_THROWS(parse_v(huge), Error, "header length");
    CHECK_THROWS(parse_v(raw("{\"t\":", p8)), Error, "not valid JSON");
    CHECK_THROWS(parse_v(raw("[1,2]", p8)), Error, "not a JSON object");
    CHECK_THROWS(parse_v(raw("{\"__metadata__\":{\"a\":1}}", {})), Error, "not a string");
    CHECK_THROWS(parse_v(raw("{\"__metadata__\":[]}", {})), Error, "__metadata__ is not an object");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", p8)), Error,
                 "unsupported dtype");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", p8)), Error, "dtype");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", p8)), Error, "shape");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", p8)), Error, "data_offsets");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", p8)), Error,
                 "non-negative integer");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", p8)), Error,
                 "non-negative integer");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", p8)), Error,
                 "dtype and shape need 12");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", p8)), Error,
                 "< begin");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", p8)), Error,
                 "past the payload");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                             "\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
                             p8)),
                 Error, "overlaps");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", p8)), Error,
                 "belong to no tensor");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", p8)), Error,
                 "trailing bytes");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                             "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                             p8)),
                 Error, "duplicate header key");
    CHECK_THROWS(parse_v(raw("{\"t\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                             "\"data_offsets\":[0,8]}}",
                             p8)),
                 Error, "impossibly large");
    File nf = parse_v(raw("{\"__metadata__\":{}}", {}));
    CHECK_THROWS(verify_payload(nf), Error, "no payload_sha256");
}

void test_json_quote()
{
    CHECK_EQ(json_quote("a\"b\\c\n\x01"), std::string("\"a\\\"b\\\\c\\n\\u0001\""));
}

}  // namespace

int main()
{
    RUN(test_round_trip);
    RUN(test_refusals);
    RUN(test_json_quote);
    return samda_test::summary();
}
