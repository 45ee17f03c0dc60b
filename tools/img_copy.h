// The copy engine of `coblk-img convert`: several coroutines on one loop
// copy a source layer onto a target layer chunk by chunk, skipping what the
// source reports (block_status) or shows (zero-filled data) to be zeros.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/layer.h"
#include "engine/result.h"
#include "engine/sync.h"
#include "tools/img_common.h"
#include "tools/img_progress.h"

namespace coblk::img {

struct CopyConfig {
    uint64_t chunk = 2 << 20;    // largest data request
    unsigned workers = 8;        // coroutines in flight
    // Zero runs shorter than this (aligned to it) are written as data; 0
    // turns zero detection off and writes every byte (fully allocated target).
    uint64_t sparse = 4096;
    // The target already reads as zeros (a new file): zero ranges are left
    // alone instead of being written with write_zeroes.
    bool target_zeroed = false;
};

class Copier {
public:
    // `src_name`/`dst_name` name the devices in error messages. The layers,
    // names and progress meter must outlive the Copier.
    Copier(Layer& src, std::string_view src_name, Layer& dst, std::string_view dst_name,
           const CopyConfig& cfg, Progress& progress);

    // Copies the source's first src.size() bytes to the target (no flush).
    // Fails with the first I/O error, as "error reading 'URI' at offset N: ...",
    // or with ENOMEM when buffers cannot be had.
    Task<Result<void>> run();

private:
    // A range to handle in one go: data to copy, or a range known to read as
    // zeros. len == 0 means there is nothing left.
    struct Piece {
        uint64_t off = 0;
        uint64_t len = 0;
        bool zero = false;
    };

    // Takes the next piece from the cursor. 0, or -errno after recording
    // the failure of the source's block_status.
    Task<int> claim(Piece* out);
    // Claims and handles pieces until none is left or something failed.
    Task<void> worker(uint8_t* buf);
    // Reads a data piece into `buf` and writes it out, leaving out (or
    // zeroing) its all-zero blocks. 0 or -errno (recorded).
    Task<int> copy_data(const Piece& p, uint8_t* buf);
    // Makes [off, off+len) of the target read as zeros unless it already
    // does. 0 or -errno (recorded).
    Task<int> zero_range(uint64_t off, uint64_t len);
    // Writes `len` bytes of `buf` at `off` on the target. 0 or -errno (recorded).
    Task<int> write_data(uint64_t off, const uint8_t* buf, uint64_t len);
    // Records the first failure; later ones are dropped.
    void fail(std::string_view what, std::string_view uri, uint64_t off, int err);

    Layer& src_;
    std::string src_name_;
    Layer& dst_;
    std::string dst_name_;
    CopyConfig cfg_;
    Progress& progress_;
    uint64_t size_;

    Mutex claim_lock_;
    uint64_t cursor_ = 0;
    Buffer zeros_;       // chunk bytes of zeros, for targets without write_zeroes
    std::optional<Error> failure_;
};

} // namespace coblk::img
