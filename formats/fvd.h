// The FVD image format (docs/fvd-format.md): a copy-on-write image over an
// optional read-only base image. A bitmap says which blocks' data is in the
// image (the rest reads from the base, or as zeros); in a compact image a
// table maps chunks to where they were allocated; metadata changes are
// kept in memory until the guest flushes, then written as one journal
// record after the data they describe is durable.
//
// Two copies of the metadata are kept (the paper's fresh and stale
// bitmaps): `fresh` is what reads and writes use, `durable` is what the
// image on disk says (after journal replay). A flush moves queued changes
// from one to the other. Threads: one loop, like every layer.
#pragma once

#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "engine/layer.h"
#include "engine/result.h"
#include "engine/sync.h"
#include "formats/fvd_bitmap.h"
#include "formats/fvd_format.h"

namespace coblk {

// Opens the base image an FVD header names (the name as stored, and its
// format, which may be empty to probe), read-only. Supplied by uri/open,
// which resolves relative names and refuses loops.
using FvdBaseOpener =
    std::function<Task<Result<std::unique_ptr<Layer>>>(std::string name, std::string format)>;

// The file operations an FVD image needs to take snapshots beside itself
// (docs/fvd-format.md, "Snapshots"). Supplied by uri/open, which knows the
// protocols, so that formats/ names none. Names are siblings of the image:
// file names in its directory. Loop thread.
class FvdSiblings {
public:
    virtual ~FvdSiblings() = default;
    // Fails with ENOTSUP naming the protocol where snapshots cannot be made.
    virtual Result<void> supported() const = 0;
    // Creates (or empties) sibling `rel` with `size` bytes and opens it
    // read-write with the image's cache mode and locking.
    virtual Task<Result<std::unique_ptr<Layer>>> create(const std::string& rel,
                                                        uint64_t size) = 0;
    // Gives the image's file the second name `rel` and makes that durable.
    // A `rel` that is already a name of the image's file (left by an
    // interrupted snapshot) is kept; any other existing `rel` fails with
    // EEXIST naming it.
    virtual Task<Result<void>> link_image(const std::string& rel) = 0;
    // Renames sibling `rel` over the image's own name, atomically, and
    // makes the directory durable. `renamed` says whether the rename took
    // place: an error can follow it (the directory sync failed).
    virtual Task<Result<void>> replace_image(const std::string& rel, bool& renamed) = 0;
    // Removes sibling `rel`; a missing one is not an error.
    virtual Task<Result<void>> remove(const std::string& rel) = 0;
};

// Open-time choices; unset ones take the image's defaults (its compatible
// feature bits).
struct FvdOptions {
    std::optional<bool> copy_on_read;
    std::optional<bool> prefetch;
    uint64_t prefetch_delay_ms = 2000;      // idle time before prefetching starts
    uint64_t prefetch_idle_ms = 50;         // guest quiet this long: prefetch runs
    uint64_t prefetch_min_mbps = 0;         // slower than this: prefetch backs off
    uint64_t cor_budget = 16ull << 20;      // bytes of copy-on-read data in flight
    // Do not open the base (for tools that read only the image's own
    // blocks, such as commit, which opens the base for writing itself).
    bool without_base = false;
};

// Parses fvd's open options (copy_on_read, prefetch, prefetch_delay, ...)
// from `opts`. Fails naming a bad one.
Result<FvdOptions> parse_fvd_options(const std::vector<std::pair<std::string, std::string>>& opts);

class FvdLayer : public Layer {
public:
    // Opens the FVD image held by `child`: reads and checks the header,
    // bitmap and table, replays the journal, opens the base through
    // `opener` (may be null when the image has no base). `name` is used in
    // messages. Fails naming the field or file at fault. Loop thread.
    static Task<Result<std::unique_ptr<FvdLayer>>> open(std::unique_ptr<Layer> child,
                                                        std::string name, bool read_only,
                                                        const FvdBaseOpener* opener,
                                                        const FvdOptions& options = {},
                                                        std::shared_ptr<FvdSiblings> siblings = {});
    // Writes the metadata of a new, empty FVD image `h` into `child` (which
    // must be empty or disposable) and makes it durable. 0 or -errno.
    static Task<int> format(Layer& child, const fvd::Header& h);

    ~FvdLayer() override;
    const char* kind() const override { return "fvd"; }
    const char* protocol() const override { return child_->protocol(); }
    int64_t allocated_bytes() const override { return child_->allocated_bytes(); }
    Layer* child() const override { return child_.get(); }

    const fvd::Header& header() const { return hdr_; }
    Layer* base() const { return base_.get(); }
    // Blocks whose data is in the image.
    uint64_t blocks_in_image() const { return fresh_.count(); }
    // Journal records replayed at open.
    uint64_t replayed_records() const { return replayed_; }
    // Chunks allocated in the image / free (leaked) chunks found at open.
    uint64_t chunks_allocated() const;
    uint64_t chunks_free_at_open() const { return free_at_open_; }
    // Bytes of the child past the last physical chunk in use (space a crash
    // left behind at the end of a compact image on a file), or 0.
    uint64_t unused_tail_bytes() const;
    // Gives that space back (truncates the child). 0 or -errno.
    Task<int> release_unused_tail();

    // Points the image at another base (empty name: none) and makes the
    // header durable. The caller copies whatever data differs first. The
    // new base takes effect at the next open. 0 or -errno.
    Task<int> set_base(std::string name, std::string format, uint64_t size);

    // Copy-on-read and prefetch as they run on this open.
    bool copy_on_read() const { return cor_; }
    bool prefetching() const { return prefetch_running_; }
    // Blocks copied from the base by copy-on-read / prefetch so far.
    uint64_t blocks_copied_on_read() const { return cor_blocks_; }
    uint64_t blocks_prefetched() const { return prefetched_blocks_; }
    // True once every block is in the image and the header says so.
    bool base_copied() const { return hdr_.compatible & fvd::kCompatBaseCopied; }

    // Where the data of block `b` is.
    enum class Where { Image, Base, Zero };
    Where where(uint64_t b) const;

    // The snapshot file a snapshot `name` of image `image` lives in: a
    // sibling named "<image's file name>.snap-<name>". Any thread.
    static std::string snapshot_file(std::string_view image, std::string_view name);
    // Checks a snapshot name: 1 to 128 of A-Z a-z 0-9 . _ + -, not
    // starting with '.'. Fails with EINVAL naming what is wrong.
    static Result<void> check_snapshot_name(std::string_view name);
    // For tests: snapshot_create stops after step `k` (1: image flushed,
    // 2: snapshot name linked, 3: new overlay written, 4: renamed over the
    // image), snapshot_delete after step `k` (1: blocks copied, 2: base
    // repointed), and fails with ECANCELED, leaving the files as a crash
    // there would. 0: off.
    void stop_snapshot_after_step(int k) { stop_after_step_ = k; }

protected:
    Task<int> do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned flags) override;
    Task<int> do_flush() override;
    Task<int> do_discard(uint64_t off, uint64_t len) override;
    Task<int> do_write_zeroes(uint64_t off, uint64_t len, unsigned flags) override;
    Task<int> do_block_status(uint64_t off, uint64_t len, Extent* out) override;
    Task<void> do_close() override;
    Task<Result<std::vector<SnapshotInfo>>> do_snapshot_list() override;
    Task<Result<void>> do_snapshot_create(const std::string& name) override;
    Task<Result<void>> do_snapshot_delete(const std::string& name) override;
    Task<Result<void>> do_snapshot_revert(const std::string& name) override;

private:
    // Revert's and delete's shared refusals (formats/fvd_snapshot.cpp).
    Task<Result<void>> check_latest_snapshot(const std::string& name, const std::string& what,
                                             const char* older);
    // The request paths behind the gate that snapshots close (see hold());
    // reads pass it inline in do_preadv.
    Task<int> write_impl(uint64_t off, const iovec* iov, int iovcnt, unsigned flags);
    Task<int> write_zeroes_impl(uint64_t off, uint64_t len, unsigned flags);
    // Waits while a snapshot switch holds requests back.
    Task<void> wait_unheld();
    // Holds new requests back, waits for those in flight and stops the
    // background copiers; release() undoes it and restarts them.
    Task<void> hold();
    void release();
    // Turns copy-on-read on and starts the prefetcher as the options and
    // the header ask, for a writable image with a base.
    void start_background();
    // Moves every piece of image state (child, base, header, metadata,
    // counters) from `from` into this layer; `from` is left empty.
    void take_state(FvdLayer& from);
    // Makes this layer the image in `child` over `base` (loads its
    // metadata, writable). On failure the state is as before and `child`
    // and `base` are handed back.
    Task<Result<void>> adopt(std::unique_ptr<Layer>& child, std::unique_ptr<Layer>& base);
    // Writes an empty overlay over `base_rel` (an FVD snapshot of
    // `base_size` bytes) into new sibling `rel`, with this image's geometry
    // and options. Returns its opened storage.
    Task<Result<std::unique_ptr<Layer>>> make_overlay(const std::string& rel,
                                                      const std::string& base_rel,
                                                      uint64_t base_size);
    // The steps of snapshot_create, run while requests are held.
    Task<Result<void>> create_held(const std::string& name);
    Task<Result<void>> revert_held(const std::string& name);
    Task<Result<void>> delete_held(const std::string& name);
    // Marks the image in use again after a failed snapshot (best effort).
    Task<void> mark_in_use();
    // The snapshot name a base reference of this chain stands for.
    std::string snapshot_name(const std::string& base_name) const;

    FvdLayer(std::unique_ptr<Layer> child, std::string name);
    Task<Result<void>> load(bool read_only, const FvdBaseOpener* opener);
    // Stores base data the guest just read (`n` blocks from `first`, whose
    // bytes are in `data`) into the image, unless a write got there first.
    // Runs in the background; holds at most the copy-on-read budget.
    Task<void> copy_in(uint64_t first, uint64_t n, std::unique_ptr<uint8_t[]> data);
    // Copies blocks [first, first+n) that are still in the base into the
    // image. Caller holds no lock. 0 or -errno.
    Task<int> copy_from_base(uint64_t first, uint64_t n, const uint8_t* data);
    // The background copier: waits for an idle guest, copies the base in,
    // then records that the base is no longer needed.
    Task<void> prefetch_loop();
    // Marks guest I/O for the prefetcher's idleness test.
    void guest_io() { last_guest_ns_ = now_ns(); }
    static uint64_t now_ns();

    // Reads/writes virtual bytes that are in the image, through the table.
    Task<int> image_io(bool write, uint64_t voff, const iovec* iov, int iovcnt, unsigned flags);
    // Reads virtual bytes from the base (zeros past its end or without one).
    Task<int> base_read(uint64_t voff, const iovec* iov, int iovcnt);
    // Writes [off, off+len) of `iov` into blocks [first, first+n) that are
    // not in the image yet, filling the rest of partial blocks from the
    // base, then marks them. Caller holds the blocks' range lock.
    Task<int> allocating_write(uint64_t first, uint64_t n, uint64_t off, const iovec* iov,
                               int iovcnt, uint64_t skip, uint64_t len);
    // Gives every chunk under blocks [first, first+n) a physical chunk.
    Task<int> allocate_chunks(uint64_t first, uint64_t n);
    // Grows a child that cannot grow by itself so that physical chunk `p`
    // fits. 0 or -ENOSPC.
    Task<int> ensure_capacity(uint64_t p);
    // True when block `b`'s bytes need no fill: its chunk is fresh storage
    // that reads as zeros and the base has nothing there.
    bool block_reads_zero_in_place(uint64_t b) const;
    // Records that blocks [first, first+n) hold data the durable metadata
    // must learn at the next flush.
    void queue_blocks(uint64_t first, uint64_t n);
    // Makes every completed write durable: flushes the child, then writes
    // the queued metadata as one journal record (or writes all metadata in
    // place when the journal is full) and flushes again. 0 or -errno.
    Task<int> commit();
    // Writes `bitmap` and `table` in place and starts a new journal epoch
    // with header state `clean`. 0 or -errno.
    Task<int> write_back(const fvd::Bitmap& bitmap, const std::vector<uint32_t>& table,
                         bool clean);
    Task<int> write_header();

    uint64_t block_of(uint64_t off) const { return off >> block_shift_; }
    uint64_t chunk_of_block(uint64_t b) const { return b >> (chunk_shift_ - block_shift_); }
    uint64_t block_start(uint64_t b) const { return b << block_shift_; }
    uint64_t block_end(uint64_t b) const;

    std::unique_ptr<Layer> child_;
    std::unique_ptr<Layer> base_;
    std::string name_;
    fvd::Header hdr_;
    unsigned block_shift_ = 16, chunk_shift_ = 20;
    uint64_t base_limit_ = 0;       // base bytes readable: min(base_size, base size)

    fvd::Bitmap fresh_, durable_, queued_;
    std::vector<uint32_t> fresh_table_, durable_table_;
    std::vector<bool> table_queued_;
    std::vector<uint64_t> pending_blocks_, pending_chunks_;

    std::vector<uint32_t> free_chunks_;  // leaked physical chunks, highest first
    uint64_t next_chunk_ = 0;            // first never-used physical chunk
    uint64_t zero_from_chunk_ = UINT64_MAX;  // physical chunks from here read as zeros
    uint64_t free_at_open_ = 0;

    uint64_t journal_pos_ = 0, journal_seq_ = 1;
    uint64_t replayed_ = 0;

    FvdOptions opts_;
    Loop* loop_ = nullptr;
    bool cor_ = false;
    uint64_t cor_in_flight_ = 0;     // bytes held by copy-on-read tasks
    uint64_t cor_blocks_ = 0;
    bool prefetch_running_ = false;
    uint64_t prefetched_blocks_ = 0;
    uint64_t last_guest_ns_ = 0;
    bool stopping_ = false;          // close() started: background work ends
    TaskGroup background_;

    RangeLock block_lock_;   // serialises writes that allocate blocks
    Mutex commit_lock_;      // one commit at a time
    Mutex grow_lock_;

    std::shared_ptr<FvdSiblings> siblings_;
    Mutex snap_lock_;        // one snapshot operation at a time
    bool held_ = false;      // a snapshot switch holds new requests back
    WaitGroup unheld_;       // 1 while held_: requests wait on it
    WaitGroup io_;           // requests past the gate
    int stop_after_step_ = 0;
};

} // namespace coblk
