#include "bench/verify_block.h"

#include <cstring>

#include <fmt/format.h>

#include "engine/crc32c.h"
#include "bench/prng.h"

namespace coblk::bench {
namespace {

constexpr uint32_t kMagic = 0x31564243;  // "CBV1" read as little-endian

template <typename T>
void put_le(unsigned char* p, T v) noexcept
{
    for (size_t i = 0; i < sizeof(T); i++)
        p[i] = static_cast<unsigned char>(v >> (8 * i));
}

template <typename T>
T get_le(const unsigned char* p) noexcept
{
    T v = 0;
    for (size_t i = 0; i < sizeof(T); i++)
        v |= T(p[i]) << (8 * i);
    return v;
}

} // namespace

void fill_verify_block(void* buf, size_t len, uint64_t offset, uint64_t seq) noexcept
{
    auto* p = static_cast<unsigned char*>(buf);
    put_le<uint32_t>(p, kMagic);
    put_le<uint64_t>(p + 8, offset);
    put_le<uint64_t>(p + 16, seq);
    put_le<uint32_t>(p + 24, uint32_t(len));
    put_le<uint32_t>(p + 28, 0);
    uint64_t state = seq ^ (offset * 0x9E3779B97F4A7C15ull);
    size_t i = kVerifyHeaderBytes;
    for (; i + 8 <= len; i += 8) {
        uint64_t w = splitmix64(state);
        std::memcpy(p + i, &w, 8);
    }
    if (i < len) {
        uint64_t w = splitmix64(state);
        std::memcpy(p + i, &w, len - i);
    }
    put_le<uint32_t>(p + 4, crc32c(0, p + 8, len - 8));
}

std::string check_verify_block(const void* buf, size_t len, uint64_t offset)
{
    auto* p = static_cast<const unsigned char*>(buf);
    uint32_t magic = get_le<uint32_t>(p);
    if (magic != kMagic)
        return fmt::format("bad magic 0x{:08x} (expected 0x{:08x}): the block holds no "
                           "coblk-bench verify header", magic, kMagic);
    uint64_t stored_off = get_le<uint64_t>(p + 8);
    uint32_t stored_len = get_le<uint32_t>(p + 24);
    if (stored_len != len)
        return fmt::format("the header says the block is {} bytes long, not {} (written "
                           "with another bs?)", stored_len, len);
    if (stored_off != offset)
        return fmt::format("the header names offset {}: the block was written elsewhere",
                           stored_off);
    uint32_t stored = get_le<uint32_t>(p + 4);
    uint32_t computed = crc32c(0, p + 8, len - 8);
    if (stored != computed)
        return fmt::format("crc32c mismatch: stored 0x{:08x}, computed 0x{:08x} (write "
                           "sequence {})", stored, computed, get_le<uint64_t>(p + 16));
    return {};
}

} // namespace coblk::bench
