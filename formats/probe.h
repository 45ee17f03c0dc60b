// Image format probing from an image's first bytes.
#pragma once

#include <cstddef>
#include <string_view>

namespace coblk {

constexpr size_t kProbeBytes = 512;

// The name of the image format whose signature `head` starts with ("qcow2",
// "vmdk", "vdi", ...), or "raw" when none matches. `len` may be short (a
// small image). Any thread.
const char* probe_format(const unsigned char* head, size_t len);

// True for the formats coblk opens ("raw", "fvd").
bool format_supported(std::string_view name);

} // namespace coblk
