// libFuzzer target: FVD's metadata parser as the open path runs it —
// header, table, journal replay and the bitmap/table consistency check —
// on an arbitrary image. The input is the image's first bytes; regions
// past its end read as zeros (as from a sparse file). Must never crash,
// hang or allocate more than the parser's limits, whatever the bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "formats/fvd_format.h"

using namespace coblk;

namespace {

// The bytes [off, off + len) of the image, zeros past its end.
std::vector<uint8_t> region(const uint8_t* data, size_t size, uint64_t off, uint64_t len)
{
    std::vector<uint8_t> out(len, 0);
    if (off < size)
        std::memcpy(out.data(), data + off, std::min<uint64_t>(len, size - off));
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // The image claims to be as large as the input, or a little larger, so
    // that regions past the input are allowed sometimes.
    uint64_t image_size = size + (size ? data[size - 1] : 0) * 4096ull;
    auto h = fvd::decode_header(std::span<const uint8_t>(data, size), image_size, size % 2);
    if (!h)
        return 0;
    fvd::Bitmap bitmap(h->blocks());
    bitmap.bytes() = region(data, size, h->bitmap_offset, fvd::bitmap_bytes(*h));
    std::vector<uint32_t> table;
    if (h->compact()) {
        auto t = fvd::decode_table(region(data, size, h->table_offset, fvd::table_bytes(*h)), *h);
        if (!t)
            return 0;
        table = std::move(t).value();
    }
    auto rep = fvd::replay_journal(region(data, size, h->journal_offset, h->journal_size), *h);
    if (!rep)
        return 0;
    (void)fvd::apply_journal(*rep, bitmap, table, *h);
    return 0;
}
