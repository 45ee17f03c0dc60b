// CRC-32C (Castagnoli), the checksum of verify=crc32c: the SSE4.2 crc32
// instruction when the CPU has it, a table-driven software version
// otherwise. Both give the standard values (crc32c("123456789") ==
// 0xE3069283).
#pragma once

#include <cstddef>
#include <cstdint>

namespace coblk {

// Continues a CRC-32C: pass 0 to start, or a previous result to extend it
// over more bytes. Any thread.
uint32_t crc32c(uint32_t crc, const void* data, size_t len) noexcept;

// The software version alone, for tests that compare both paths.
uint32_t crc32c_sw(uint32_t crc, const void* data, size_t len) noexcept;

// True when crc32c() uses the CPU instruction.
bool crc32c_hw_available() noexcept;

} // namespace coblk
