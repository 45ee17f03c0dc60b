// FVD's on-disk structures (docs/fvd-format.md): the header, the bitmap and
// table regions, and journal records. Pure byte work, no I/O, so that the
// parser can be fed anything (tests, fuzzing). Every decoder refuses bad
// input with a message naming the field; none allocates more than the
// caller-provided bounds allow. Any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/result.h"
#include "formats/fvd_bitmap.h"

namespace coblk::fvd {

constexpr size_t kMagicLen = 12;
constexpr char kMagic[kMagicLen] = {'F', 'V', 'D', '\0', 'c', 'o', 'b', 'l', 'k', 0, 0, 0};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kHeaderSize = 4096;
constexpr uint64_t kAlign = 4096;          // every region starts and ends here
constexpr uint32_t kUnallocated = 0xFFFFFFFFu;
constexpr size_t kMaxStringLen = 1024;     // base name, base format, data file

// Incompatible features: a reader that does not know one must refuse.
enum : uint64_t {
    kIncompatCompact = 1ull << 0,     // the table maps chunks (compact image)
    kIncompatDataFile = 1ull << 1,    // data lives in a separate file
    kIncompatKnown = kIncompatCompact | kIncompatDataFile,
};
// Compatible features: may be ignored by a reader that does not know them.
enum : uint64_t {
    kCompatCopyOnRead = 1ull << 0,    // copy base data read by the guest
    kCompatPrefetch = 1ull << 1,      // copy the whole base in the background
    kCompatBaseCopied = 1ull << 2,    // every base block is in the image
    kCompatBaseIsSnapshot = 1ull << 3, // the base is a snapshot made by snapshot_create
};

struct Header {
    uint32_t version = kVersion;
    uint64_t incompatible = 0;
    uint64_t compatible = 0;
    uint64_t autoclear = 0;
    uint64_t virtual_size = 0;
    uint32_t block_size = 0;
    uint32_t chunk_size = 0;
    uint64_t bitmap_offset = 0, bitmap_size = 0;
    uint64_t table_offset = 0, table_size = 0;
    uint64_t journal_offset = 0, journal_size = 0;
    uint64_t data_offset = 0;
    uint64_t journal_sequence = 1;   // the sequence the journal's first record carries
    uint64_t base_size = 0;          // bytes of the base the image sees
    bool clean = true;
    std::string base_name;
    std::string base_format;
    std::string data_file;

    bool compact() const { return incompatible & kIncompatCompact; }
    uint64_t blocks() const { return (virtual_size + block_size - 1) / block_size; }
    uint64_t chunks() const { return (virtual_size + chunk_size - 1) / chunk_size; }
};

// Where the regions of a new image go, from its size and options. Fails
// naming an option out of range.
struct Geometry {
    uint64_t virtual_size = 0;
    uint32_t block_size = 64 * 1024;
    uint32_t chunk_size = 1024 * 1024;
    bool compact = true;
    uint64_t journal_size = 0;       // 0: chosen from the size
};
Result<Header> layout(const Geometry& g);

// The header's 4096 bytes.
std::vector<uint8_t> encode_header(const Header& h);
// Parses and checks a header. `image_size` is the size of the layer that
// holds it: regions must fit (the data area may grow past it when
// `growable`). Fails naming the field.
Result<Header> decode_header(std::span<const uint8_t> bytes, uint64_t image_size,
                             bool growable);

// Bytes of the bitmap / table a header's geometry needs (before padding).
uint64_t bitmap_bytes(const Header& h);
uint64_t table_bytes(const Header& h);

// One metadata change, as carried by a journal record.
struct Entry {
    enum Type : uint32_t { kBitmapRun = 1, kTableEntry = 2 };
    Type type = kBitmapRun;
    uint32_t a = 0;   // run length in blocks / physical chunk
    uint64_t b = 0;   // first block / virtual chunk
};

constexpr uint32_t kRecordMagic = 0x4A445646;  // "FVDJ" little-endian
constexpr size_t kRecordHeader = 24;
constexpr size_t kEntrySize = 16;

// A record holding `entries` with sequence `seq`, padded to kAlign.
std::vector<uint8_t> encode_record(uint64_t seq, std::span<const Entry> entries);
// Bytes a record of `n` entries takes.
uint64_t record_bytes(size_t n);

// The result of reading a journal region.
struct Replay {
    std::vector<Entry> entries;   // every entry of every valid record, in order
    uint64_t records = 0;         // valid records found
    uint64_t next_sequence = 0;   // the sequence the next record gets
    uint64_t end = 0;             // byte offset after the last valid record
};
// Reads records from the start of `journal` while each carries the next
// sequence number and a good CRC. A bad record at the tail (a torn write of
// a commit that was never acknowledged) ends the journal; a bad record with
// a valid later one behind it is corruption. Checks every entry against the
// header's geometry. Fails naming the record and entry.
Result<Replay> replay_journal(std::span<const uint8_t> journal, const Header& h);

// Parses the table region: every entry unallocated or a distinct physical
// chunk below the number of chunks. Fails naming the chunk.
Result<std::vector<uint32_t>> decode_table(std::span<const uint8_t> bytes, const Header& h);

// Applies replayed journal entries to the bitmap and table read from the
// image, refusing a table entry that contradicts the table or maps two
// chunks to one place; then checks that every block in the image lies in
// an allocated chunk. Fails naming the block or chunk.
Result<void> apply_journal(const Replay& rep, Bitmap& bitmap, std::vector<uint32_t>& table,
                           const Header& h);

// Turns a list of block numbers into bitmap runs (sorted, merged).
std::vector<Entry> block_runs(std::vector<uint64_t> blocks);

} // namespace coblk::fvd
