// FVD's byte layouts: see docs/fvd-format.md for the specification this
// follows field by field.
#include "formats/fvd_format.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "engine/crc32c.h"

namespace coblk::fvd {
namespace {

// Header field offsets (docs/fvd-format.md, "Header").
enum : size_t {
    kOffVersion = 12,
    kOffIncompat = 16,
    kOffCompat = 24,
    kOffAutoclear = 32,
    kOffVirtualSize = 40,
    kOffBlockSize = 48,
    kOffChunkSize = 52,
    kOffBitmapOffset = 56,
    kOffBitmapSize = 64,
    kOffTableOffset = 72,
    kOffTableSize = 80,
    kOffJournalOffset = 88,
    kOffJournalSize = 96,
    kOffDataOffset = 104,
    kOffJournalSeq = 112,
    kOffBaseSize = 120,
    kOffState = 128,
    kOffBaseNameLen = 132,
    kOffBaseFormatLen = 134,
    kOffDataFileLen = 136,
    kOffCrc = 140,
    kOffStrings = 512,
};

// Limits that keep a hostile header from making us allocate or read much.
constexpr uint64_t kMaxMetadataRegion = 256ull << 20;  // bitmap, table, journal
constexpr uint64_t kMaxVirtualSize = 1ull << 56;

template <typename T>
void put(uint8_t* p, T v)
{
    for (size_t i = 0; i < sizeof(T); i++)
        p[i] = uint8_t(uint64_t(v) >> (8 * i));
}

template <typename T>
T get(const uint8_t* p)
{
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); i++)
        v |= uint64_t(p[i]) << (8 * i);
    return T(v);
}

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint32_t header_crc(std::span<const uint8_t> b)
{
    uint8_t zero[4] = {};
    uint32_t c = crc32c(0, b.data(), kOffCrc);
    c = crc32c(c, zero, 4);
    return crc32c(c, b.data() + kOffCrc + 4, kHeaderSize - kOffCrc - 4);
}

uint32_t record_crc(const uint8_t* p, size_t len)
{
    uint8_t zero[4] = {};
    uint32_t c = crc32c(0, p, 20);
    c = crc32c(c, zero, 4);
    return crc32c(c, p + kRecordHeader, len - kRecordHeader);
}

struct Region {
    const char* name;
    uint64_t off, size;
};

// Checks one region: aligned, inside the metadata area, inside the image.
Result<void> check_region(const Region& r, uint64_t data_offset, uint64_t image_size)
{
    if (r.off % kAlign || r.size % kAlign)
        return make_error(EINVAL, "FVD header: {} region (offset {}, size {}) is not aligned "
                          "to {} bytes", r.name, r.off, r.size, kAlign);
    if (r.off < kHeaderSize)
        return make_error(EINVAL, "FVD header: {} offset {} overlaps the header", r.name, r.off);
    if (r.size > kMaxMetadataRegion)
        return make_error(EINVAL, "FVD header: {} size {} is over the limit of {} bytes",
                          r.name, r.size, kMaxMetadataRegion);
    if (r.off > data_offset || r.size > data_offset - r.off)
        return make_error(EINVAL, "FVD header: {} region (offset {}, size {}) runs past "
                          "data_offset {}", r.name, r.off, r.size, data_offset);
    if (r.off + r.size > image_size)
        return make_error(EINVAL, "FVD header: {} region (offset {}, size {}) runs past the "
                          "end of the image ({} bytes)", r.name, r.off, r.size, image_size);
    return {};
}

bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

} // namespace

uint64_t bitmap_bytes(const Header& h) { return (h.blocks() + 7) / 8; }
uint64_t table_bytes(const Header& h) { return h.compact() ? h.chunks() * 4 : 0; }

Result<Header> layout(const Geometry& g)
{
    if (g.virtual_size == 0 || g.virtual_size > kMaxVirtualSize)
        return make_error(EINVAL, "FVD: size {} is out of range (1 byte to {} bytes)",
                          g.virtual_size, kMaxVirtualSize);
    if (!is_pow2(g.block_size) || g.block_size < 4096 || g.block_size > (1u << 20))
        return make_error(EINVAL, "FVD: block_size {} must be a power of two from 4K to 1M",
                          g.block_size);
    if (!is_pow2(g.chunk_size) || g.chunk_size < g.block_size || g.chunk_size > (1u << 30))
        return make_error(EINVAL, "FVD: chunk_size {} must be a power of two from block_size "
                          "({}) to 1G", g.chunk_size, g.block_size);
    Header h;
    h.virtual_size = g.virtual_size;
    h.block_size = g.block_size;
    h.chunk_size = g.chunk_size;
    if (g.compact)
        h.incompatible |= kIncompatCompact;
    if (h.chunks() >= kUnallocated)
        return make_error(EINVAL, "FVD: {} chunks of {} bytes are too many (raise chunk_size)",
                          h.chunks(), h.chunk_size);
    uint64_t journal = g.journal_size ? g.journal_size : 4ull << 20;
    if (journal < 2 * kAlign || journal % kAlign || journal > kMaxMetadataRegion)
        return make_error(EINVAL, "FVD: journal_size {} must be a multiple of 4K from 8K to "
                          "{}", journal, kMaxMetadataRegion);
    h.bitmap_offset = kHeaderSize;
    h.bitmap_size = round_up(bitmap_bytes(h), kAlign);
    uint64_t at = h.bitmap_offset + h.bitmap_size;
    if (g.compact) {
        h.table_offset = at;
        h.table_size = round_up(table_bytes(h), kAlign);
        at += h.table_size;
    }
    if (h.bitmap_size > kMaxMetadataRegion || h.table_size > kMaxMetadataRegion)
        return make_error(EINVAL, "FVD: size {} with block_size {} / chunk_size {} needs "
                          "metadata over {} bytes (raise block_size or chunk_size)",
                          g.virtual_size, g.block_size, g.chunk_size, kMaxMetadataRegion);
    h.journal_offset = at;
    h.journal_size = journal;
    at += journal;
    h.data_offset = round_up(at, 1 << 20);
    return h;
}

std::vector<uint8_t> encode_header(const Header& h)
{
    std::vector<uint8_t> b(kHeaderSize, 0);
    uint8_t* p = b.data();
    std::memcpy(p, kMagic, kMagicLen);
    put<uint32_t>(p + kOffVersion, h.version);
    put<uint64_t>(p + kOffIncompat, h.incompatible);
    put<uint64_t>(p + kOffCompat, h.compatible);
    put<uint64_t>(p + kOffAutoclear, h.autoclear);
    put<uint64_t>(p + kOffVirtualSize, h.virtual_size);
    put<uint32_t>(p + kOffBlockSize, h.block_size);
    put<uint32_t>(p + kOffChunkSize, h.chunk_size);
    put<uint64_t>(p + kOffBitmapOffset, h.bitmap_offset);
    put<uint64_t>(p + kOffBitmapSize, h.bitmap_size);
    put<uint64_t>(p + kOffTableOffset, h.table_offset);
    put<uint64_t>(p + kOffTableSize, h.table_size);
    put<uint64_t>(p + kOffJournalOffset, h.journal_offset);
    put<uint64_t>(p + kOffJournalSize, h.journal_size);
    put<uint64_t>(p + kOffDataOffset, h.data_offset);
    put<uint64_t>(p + kOffJournalSeq, h.journal_sequence);
    put<uint64_t>(p + kOffBaseSize, h.base_size);
    put<uint32_t>(p + kOffState, h.clean ? 1 : 0);
    put<uint16_t>(p + kOffBaseNameLen, uint16_t(h.base_name.size()));
    put<uint16_t>(p + kOffBaseFormatLen, uint16_t(h.base_format.size()));
    put<uint16_t>(p + kOffDataFileLen, uint16_t(h.data_file.size()));
    size_t at = kOffStrings;
    for (const std::string* s : {&h.base_name, &h.base_format, &h.data_file}) {
        std::memcpy(p + at, s->data(), s->size());
        at += s->size();
    }
    put<uint32_t>(p + kOffCrc, header_crc(b));
    return b;
}

Result<Header> decode_header(std::span<const uint8_t> b, uint64_t image_size, bool growable)
{
    if (b.size() < kHeaderSize || image_size < kHeaderSize)
        return make_error(EINVAL, "FVD header: truncated (the image holds {} bytes, the header "
                          "needs {})", std::min<uint64_t>(b.size(), image_size), kHeaderSize);
    const uint8_t* p = b.data();
    if (std::memcmp(p, kMagic, kMagicLen) != 0)
        return make_error(EINVAL, "FVD header: bad magic (not an FVD image)");
    Header h;
    h.version = get<uint32_t>(p + kOffVersion);
    if (h.version != kVersion)
        return make_error(ENOTSUP, "FVD header: version {} (this build reads version {})",
                          h.version, kVersion);
    uint32_t crc = get<uint32_t>(p + kOffCrc);
    if (crc != header_crc(b.first(kHeaderSize)))
        return make_error(EINVAL, "FVD header: bad CRC (stored {:#010x}, computed {:#010x})", crc,
                          header_crc(b.first(kHeaderSize)));
    h.incompatible = get<uint64_t>(p + kOffIncompat);
    h.compatible = get<uint64_t>(p + kOffCompat);
    h.autoclear = get<uint64_t>(p + kOffAutoclear);
    if (h.incompatible & ~kIncompatKnown)
        return make_error(ENOTSUP, "FVD header: unknown incompatible feature bits {:#x}",
                          h.incompatible & ~kIncompatKnown);
    if (h.incompatible & kIncompatDataFile)
        return make_error(ENOTSUP, "FVD header: incompatible feature data_file (a separate "
                          "data file) is not supported by this build");
    h.virtual_size = get<uint64_t>(p + kOffVirtualSize);
    h.block_size = get<uint32_t>(p + kOffBlockSize);
    h.chunk_size = get<uint32_t>(p + kOffChunkSize);
    h.bitmap_offset = get<uint64_t>(p + kOffBitmapOffset);
    h.bitmap_size = get<uint64_t>(p + kOffBitmapSize);
    h.table_offset = get<uint64_t>(p + kOffTableOffset);
    h.table_size = get<uint64_t>(p + kOffTableSize);
    h.journal_offset = get<uint64_t>(p + kOffJournalOffset);
    h.journal_size = get<uint64_t>(p + kOffJournalSize);
    h.data_offset = get<uint64_t>(p + kOffDataOffset);
    h.journal_sequence = get<uint64_t>(p + kOffJournalSeq);
    h.base_size = get<uint64_t>(p + kOffBaseSize);
    uint32_t state = get<uint32_t>(p + kOffState);
    if (state > 1)
        return make_error(EINVAL, "FVD header: state {} is neither 0 (in use) nor 1 (clean)",
                          state);
    h.clean = state == 1;

    if (h.virtual_size == 0 || h.virtual_size > kMaxVirtualSize)
        return make_error(EINVAL, "FVD header: virtual_size {} is out of range", h.virtual_size);
    if (!is_pow2(h.block_size) || h.block_size < 4096 || h.block_size > (1u << 20))
        return make_error(EINVAL, "FVD header: block_size {} is not a power of two from 4K "
                          "to 1M", h.block_size);
    if (!is_pow2(h.chunk_size) || h.chunk_size < h.block_size || h.chunk_size > (1u << 30))
        return make_error(EINVAL, "FVD header: chunk_size {} is not a power of two from "
                          "block_size to 1G", h.chunk_size);
    if (h.chunks() >= kUnallocated)
        return make_error(EINVAL, "FVD header: {} chunks are too many for the table",
                          h.chunks());
    if (h.data_offset % kAlign)
        return make_error(EINVAL, "FVD header: data_offset {} is not aligned to {} bytes",
                          h.data_offset, kAlign);
    if (h.data_offset > image_size && !growable)
        return make_error(EINVAL, "FVD header: data_offset {} is past the end of the image "
                          "({} bytes)", h.data_offset, image_size);

    Region regions[3] = {{"bitmap", h.bitmap_offset, h.bitmap_size},
                         {"table", h.table_offset, h.table_size},
                         {"journal", h.journal_offset, h.journal_size}};
    size_t nregions = 3;
    if (!h.compact()) {
        if (h.table_offset || h.table_size)
            return make_error(EINVAL, "FVD header: a table (offset {}, size {}) in an image "
                              "without the compact feature", h.table_offset, h.table_size);
        regions[1] = regions[2];
        nregions = 2;
    }
    for (size_t i = 0; i < nregions; i++)
        if (auto r = check_region(regions[i], h.data_offset, image_size); !r)
            return r.error();
    for (size_t i = 0; i < nregions; i++)
        for (size_t j = i + 1; j < nregions; j++) {
            const Region &a = regions[i], &c = regions[j];
            if (a.off < c.off + c.size && c.off < a.off + a.size)
                return make_error(EINVAL, "FVD header: {} region (offset {}, size {}) overlaps "
                                  "{} region (offset {}, size {})", a.name, a.off, a.size,
                                  c.name, c.off, c.size);
        }
    if (h.bitmap_size < bitmap_bytes(h) || h.bitmap_size > round_up(bitmap_bytes(h), kAlign))
        return make_error(EINVAL, "FVD header: bitmap_size {} does not match {} blocks "
                          "(expected {})", h.bitmap_size, h.blocks(),
                          round_up(bitmap_bytes(h), kAlign));
    if (h.compact() &&
        (h.table_size < table_bytes(h) || h.table_size > round_up(table_bytes(h), kAlign)))
        return make_error(EINVAL, "FVD header: table_size {} does not match {} chunks "
                          "(expected {})", h.table_size, h.chunks(),
                          round_up(table_bytes(h), kAlign));
    if (h.journal_size < 2 * kAlign)
        return make_error(EINVAL, "FVD header: journal_size {} is under {} bytes",
                          h.journal_size, 2 * kAlign);
    if (!h.compact() && !growable && h.data_offset + h.virtual_size > image_size)
        return make_error(EINVAL, "FVD header: the data area (offset {}, {} bytes) runs past "
                          "the end of the image ({} bytes)", h.data_offset, h.virtual_size,
                          image_size);

    size_t lens[3] = {get<uint16_t>(p + kOffBaseNameLen), get<uint16_t>(p + kOffBaseFormatLen),
                      get<uint16_t>(p + kOffDataFileLen)};
    const char* names[3] = {"base_name_len", "base_format_len", "data_file_len"};
    std::string* strs[3] = {&h.base_name, &h.base_format, &h.data_file};
    size_t at = kOffStrings;
    for (int i = 0; i < 3; i++) {
        if (lens[i] > kMaxStringLen)
            return make_error(EINVAL, "FVD header: {} {} is over {}", names[i], lens[i],
                              kMaxStringLen);
        strs[i]->assign(reinterpret_cast<const char*>(p + at), lens[i]);
        if (strs[i]->find('\0') != std::string::npos)
            return make_error(EINVAL, "FVD header: the string of {} holds a NUL byte",
                              names[i]);
        at += lens[i];
    }
    if (h.base_name.empty() && (!h.base_format.empty() || h.base_size))
        return make_error(EINVAL, "FVD header: base_format or base_size set without a base "
                          "image");
    return h;
}

uint64_t record_bytes(size_t n) { return round_up(kRecordHeader + kEntrySize * n, kAlign); }

std::vector<uint8_t> encode_record(uint64_t seq, std::span<const Entry> entries)
{
    std::vector<uint8_t> b(record_bytes(entries.size()), 0);
    uint8_t* p = b.data();
    put<uint32_t>(p, kRecordMagic);
    put<uint32_t>(p + 4, uint32_t(b.size()));
    put<uint64_t>(p + 8, seq);
    put<uint32_t>(p + 16, uint32_t(entries.size()));
    uint8_t* e = p + kRecordHeader;
    for (const Entry& en : entries) {
        put<uint32_t>(e, en.type);
        put<uint32_t>(e + 4, en.a);
        put<uint64_t>(e + 8, en.b);
        e += kEntrySize;
    }
    put<uint32_t>(p + 20, record_crc(p, kRecordHeader + kEntrySize * entries.size()));
    return b;
}

namespace {

// Parses the record at `pos` if it is whole, carries `seq` and a good CRC.
// Returns its length, or 0 when it is not such a record.
uint64_t valid_record_at(std::span<const uint8_t> j, uint64_t pos, uint64_t seq)
{
    if (pos + kRecordHeader > j.size())
        return 0;
    const uint8_t* p = j.data() + pos;
    uint32_t len = get<uint32_t>(p + 4);
    uint32_t n = get<uint32_t>(p + 16);
    if (get<uint32_t>(p) != kRecordMagic || get<uint64_t>(p + 8) != seq || len < kAlign ||
        len % kAlign || len > j.size() - pos || n > (len - kRecordHeader) / kEntrySize)
        return 0;
    if (get<uint32_t>(p + 20) != record_crc(p, kRecordHeader + kEntrySize * n))
        return 0;
    return len;
}

} // namespace

Result<Replay> replay_journal(std::span<const uint8_t> j, const Header& h)
{
    Replay out;
    uint64_t seq = h.journal_sequence, pos = 0;
    for (;;) {
        uint64_t len = valid_record_at(j, pos, seq);
        if (len == 0)
            break;
        const uint8_t* p = j.data() + pos;
        uint32_t n = get<uint32_t>(p + 16);
        for (uint32_t k = 0; k < n; k++) {
            const uint8_t* e = p + kRecordHeader + kEntrySize * k;
            Entry en;
            uint32_t type = get<uint32_t>(e);
            en.a = get<uint32_t>(e + 4);
            en.b = get<uint64_t>(e + 8);
            if (type == Entry::kBitmapRun) {
                if (en.a == 0 || en.b >= h.blocks() || en.a > h.blocks() - en.b)
                    return make_error(EINVAL, "FVD journal: record {} entry {}: blocks {}+{} "
                                      "are past the last block ({})", seq, k, en.b, en.a,
                                      h.blocks());
            } else if (type == Entry::kTableEntry) {
                if (!h.compact())
                    return make_error(EINVAL, "FVD journal: record {} entry {}: a table entry "
                                      "in an image without a table", seq, k);
                if (en.b >= h.chunks() || en.a >= h.chunks())
                    return make_error(EINVAL, "FVD journal: record {} entry {}: chunk {} -> "
                                      "{} is past the last chunk ({})", seq, k, en.b, en.a,
                                      h.chunks());
            } else {
                return make_error(EINVAL, "FVD journal: record {} entry {}: unknown type {}",
                                  seq, k, type);
            }
            en.type = Entry::Type(type);
            out.entries.push_back(en);
        }
        out.records++;
        seq++;
        pos += len;
    }
    // A torn tail is normal; a good record after a bad one is not.
    for (uint64_t at = pos + kAlign; at < j.size(); at += kAlign)
        if (valid_record_at(j, at, seq + 1))
            return make_error(EINVAL, "FVD journal: record {} at offset {} is damaged (bad "
                              "magic, length or CRC) but record {} follows it", seq, pos,
                              seq + 1);
    out.next_sequence = seq;
    out.end = pos;
    return out;
}

Result<std::vector<uint32_t>> decode_table(std::span<const uint8_t> bytes, const Header& h)
{
    if (!h.compact())
        return std::vector<uint32_t>{};
    if (bytes.size() < table_bytes(h))
        return make_error(EINVAL, "FVD table: {} bytes where {} chunks need {}", bytes.size(),
                          h.chunks(), table_bytes(h));
    std::vector<uint32_t> table(h.chunks());
    Bitmap owned(h.chunks());
    for (uint64_t i = 0; i < h.chunks(); i++) {
        uint32_t p = get<uint32_t>(bytes.data() + 4 * i);
        table[i] = p;
        if (p == kUnallocated)
            continue;
        if (p >= h.chunks())
            return make_error(EINVAL, "FVD table: chunk {} maps to physical chunk {}, past the "
                              "last one ({})", i, p, h.chunks() - 1);
        if (owned.test(p))
            return make_error(EINVAL, "FVD table: chunk {} maps to physical chunk {}, which "
                              "another chunk already uses", i, p);
        owned.set(p);
    }
    return table;
}

Result<void> apply_journal(const Replay& rep, Bitmap& bitmap, std::vector<uint32_t>& table,
                           const Header& h)
{
    Bitmap owned(h.compact() ? h.chunks() : 0);
    for (uint32_t p : table)
        if (p != kUnallocated)
            owned.set(p);
    for (const Entry& e : rep.entries) {
        if (e.type == Entry::kBitmapRun) {
            bitmap.set_range(e.b, e.a);
            continue;
        }
        uint32_t& slot = table[e.b];
        if (slot == e.a)
            continue;
        if (slot != kUnallocated)
            return make_error(EINVAL, "FVD journal: chunk {} maps to physical chunk {} but the "
                              "table says {}", e.b, e.a, slot);
        if (owned.test(e.a))
            return make_error(EINVAL, "FVD journal: chunk {} maps to physical chunk {}, which "
                              "another chunk already uses", e.b, e.a);
        owned.set(e.a);
        slot = e.a;
    }
    if (h.compact()) {
        unsigned per_chunk = unsigned(std::countr_zero(h.chunk_size) -
                                      std::countr_zero(h.block_size));
        uint64_t per = uint64_t(1) << per_chunk;
        for (uint64_t c = 0; c < table.size(); c++) {
            uint64_t first = c * per;
            if (table[c] != kUnallocated || first >= h.blocks())
                continue;
            uint64_t n = std::min(per, h.blocks() - first);
            if (bitmap.any(first, n)) {
                uint64_t b = bitmap.test(first) ? first : first + bitmap.run(first, n);
                return make_error(EINVAL, "FVD bitmap: block {} is in the image but its chunk "
                                  "{} has no table entry", b, c);
            }
        }
    }
    return {};
}

std::vector<Entry> block_runs(std::vector<uint64_t> blocks)
{
    std::sort(blocks.begin(), blocks.end());
    std::vector<Entry> runs;
    for (uint64_t b : blocks) {
        if (!runs.empty()) {
            Entry& last = runs.back();
            if (b < last.b + last.a)
                continue;
            if (b == last.b + last.a && last.a < UINT32_MAX) {
                last.a++;
                continue;
            }
        }
        runs.push_back(Entry{Entry::kBitmapRun, 1, b});
    }
    return runs;
}

} // namespace coblk::fvd
