// Signatures of the image formats a user may hand us. Only the first 512
// bytes are looked at; formats recognised only by a footer (vpc fixed disks,
// dmg) probe as raw, as they do in QEMU.
#include "formats/probe.h"

#include <cstring>

namespace coblk {
namespace {

struct Signature {
    const char* format;
    size_t offset;
    const char* magic;
    size_t len;
};

constexpr Signature kSignatures[] = {
    {"qcow2", 0, "QFI\xfb\x00\x00\x00\x02", 8},
    {"qcow2", 0, "QFI\xfb\x00\x00\x00\x03", 8},
    {"qcow", 0, "QFI\xfb\x00\x00\x00\x01", 8},
    {"qed", 0, "QED\x00", 4},
    {"vmdk", 0, "KDMV", 4},
    {"vmdk", 0, "COWD", 4},
    {"vmdk", 0, "# Disk DescriptorFile", 21},
    {"vdi", 0x40, "\x7f\x10\xda\xbe", 4},
    {"vhdx", 0, "vhdxfile", 8},
    {"vpc", 0, "conectix", 8},
    {"luks", 0, "LUKS\xba\xbe", 6},
    {"parallels", 0, "WithoutFreeSpace", 16},
    {"parallels", 0, "WithouFreSpacExt", 16},
    {"bochs", 0, "Bochs Virtual HD Image", 22},
    {"cloop", 0, "#!/bin/sh\n#V2.0 Format", 22},
    {"fvd", 0, "FVD\0coblk", 9},
};

} // namespace

const char* probe_format(const unsigned char* head, size_t len)
{
    for (const Signature& s : kSignatures)
        if (s.offset + s.len <= len && std::memcmp(head + s.offset, s.magic, s.len) == 0)
            return s.format;
    return "raw";
}

bool format_supported(std::string_view name) { return name == "raw" || name == "fvd"; }

} // namespace coblk
