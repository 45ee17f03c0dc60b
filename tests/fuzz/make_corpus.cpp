// Writes the seed corpus of the FVD metadata fuzz target: small valid
// images (compact or not, with a base name, with journal records, with a
// torn record). Usage: make_corpus DIR
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "formats/fvd_format.h"

using namespace coblk;

namespace {

void put(const std::string& path, const std::vector<uint8_t>& b)
{
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(b.data(), 1, b.size(), f) != b.size()) {
        std::perror(path.c_str());
        std::exit(1);
    }
    std::fclose(f);
}

// The metadata area of an image `g` with journal records `recs`.
std::vector<uint8_t> image(const fvd::Geometry& g, const std::string& base,
                           const std::vector<std::vector<fvd::Entry>>& recs, bool tear)
{
    fvd::Header h = fvd::layout(g).value();
    h.base_name = base;
    if (!base.empty())
        h.base_size = g.virtual_size / 2;
    std::vector<uint8_t> b(h.journal_offset + h.journal_size, 0);
    auto hb = fvd::encode_header(h);
    std::memcpy(b.data(), hb.data(), hb.size());
    if (h.compact())
        std::memset(b.data() + h.table_offset, 0xFF, h.table_size);
    uint64_t pos = h.journal_offset, seq = h.journal_sequence;
    for (const auto& r : recs) {
        auto rec = fvd::encode_record(seq++, r);
        std::memcpy(b.data() + pos, rec.data(), rec.size());
        pos += rec.size();
    }
    if (tear && pos > h.journal_offset)
        b[pos - 4096 + 30] ^= 0x5A;
    // Trim the zeros at the end: the target reads past the input as zeros.
    while (b.size() > 4096 && b.back() == 0)
        b.pop_back();
    return b;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    fvd::Geometry g;
    g.virtual_size = 8 << 20;
    g.block_size = 4096;
    g.chunk_size = 65536;
    g.journal_size = 16384;
    using E = fvd::Entry;
    std::vector<std::vector<E>> recs = {{{E::kTableEntry, 0, 3}, {E::kBitmapRun, 4, 48}},
                                        {{E::kTableEntry, 1, 0}, {E::kBitmapRun, 1, 2}}};
    put(dir + "/compact-empty", image(g, "", {}, false));
    put(dir + "/compact-journal", image(g, "base.raw", recs, false));
    put(dir + "/compact-torn", image(g, "", recs, true));
    g.compact = false;
    put(dir + "/flat-journal", image(g, "gluster://h/v/base", {{{E::kBitmapRun, 9, 100}}}, false));
    return 0;
}
