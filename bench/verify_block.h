// The block format of verify=crc32c. Every written block starts with a
// 32-byte header, all fields little-endian:
//
//   0  u32  magic "CBV1"
//   4  u32  CRC-32C of bytes 8 .. end of block
//   8  u64  the block's offset on the device
//  16  u64  the sequence number of the write (also the payload's seed)
//  24  u32  the block length
//  28  u32  zero
//
// followed by pseudo-random bytes generated from the sequence number. A
// read checks magic, offset, length and CRC, so a block written at another
// offset, a torn or stale block, and a block never written by coblk-bench
// are all told apart in the message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace coblk::bench {

constexpr size_t kVerifyHeaderBytes = 32;

// Fills `len` (>= kVerifyHeaderBytes) bytes at `buf` as the block written
// at `offset` by write number `seq`. Any thread.
void fill_verify_block(void* buf, size_t len, uint64_t offset, uint64_t seq) noexcept;

// Checks the block read from `offset`; an empty string when it is intact,
// otherwise what is wrong ("bad magic ...", "crc32c mismatch ..."). Any
// thread.
std::string check_verify_block(const void* buf, size_t len, uint64_t offset);

} // namespace coblk::bench
