#include "tools/img_copy.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace coblk::img {

namespace {
// A zero range handed to write_zeroes in one request, so that progress moves
// and the other workers share the work on a large hole.
constexpr uint64_t kMaxZeroPiece = 64 << 20;
} // namespace

Copier::Copier(Layer& src, std::string_view src_name, Layer& dst, std::string_view dst_name,
               const CopyConfig& cfg, Progress& progress)
    : src_(src), src_name_(src_name), dst_(dst), dst_name_(dst_name), cfg_(cfg),
      progress_(progress), size_(src.size())
{
}

Task<Result<void>> Copier::run()
{
    std::vector<Buffer> buffers;
    for (unsigned i = 0; i < std::max(1u, cfg_.workers); i++) {
        buffers.push_back(make_buffer(cfg_.chunk));
        if (!buffers.back())
            co_return make_error(ENOMEM, "cannot allocate {} bytes of I/O buffers",
                                 cfg_.chunk * cfg_.workers);
    }
    TaskGroup group;
    for (auto& b : buffers)
        group.spawn(worker(b.get()));
    co_await group.join();
    if (failure_)
        co_return *failure_;
    co_return Result<void>{};
}

Task<int> Copier::claim(Piece* out)
{
    auto guard = co_await claim_lock_.lock();
    *out = Piece{cursor_, 0, false};
    if (failure_ || cursor_ >= size_)
        co_return 0;
    uint64_t left = size_ - cursor_;
    Extent e{left, true, false};
    if (cfg_.sparse != 0) {
        int r = co_await src_.block_status(cursor_, left, &e);
        if (r == -ENOTSUP) {
            e = Extent{left, true, false};
        } else if (r < 0) {
            fail("reading the allocation status of", src_name_, cursor_, r);
            co_return r;
        }
    }
    out->zero = e.zero || !e.data;
    out->len = e.len == 0 ? left : std::min(e.len, left);
    if (out->zero && cfg_.target_zeroed) {
        // Nothing to do for it: take it whole.
    } else if (out->zero) {
        out->len = std::min(out->len, kMaxZeroPiece);
    } else {
        // Data pieces end on chunk boundaries, which keeps requests aligned
        // for an O_DIRECT target even after an oddly sized hole.
        out->len = std::min(out->len, cfg_.chunk - cursor_ % cfg_.chunk);
    }
    cursor_ += out->len;
    co_return 0;
}

Task<void> Copier::worker(uint8_t* buf)
{
    while (!failure_) {
        Piece p;
        int r = co_await claim(&p);
        if (r < 0 || p.len == 0)
            break;
        if (p.zero)
            r = co_await zero_range(p.off, p.len);
        else
            r = co_await copy_data(p, buf);
        if (r < 0)
            break;
        progress_.add(p.len);
    }
}

Task<int> Copier::copy_data(const Piece& p, uint8_t* buf)
{
    int r = co_await src_.pread(p.off, buf, p.len);
    if (r < 0) {
        fail("reading", src_name_, p.off, r);
        co_return r;
    }
    if (cfg_.sparse == 0)
        co_return co_await write_data(p.off, buf, p.len);

    // Walk the piece in blocks aligned to the sparse size, and issue one
    // request per run of blocks of the same kind (all zeros or not).
    uint64_t end = p.off + p.len;
    auto block_end = [&](uint64_t pos) {
        return std::min(end, (pos / cfg_.sparse + 1) * cfg_.sparse);
    };
    auto block_zero = [&](uint64_t pos) {
        return is_zero(buf + (pos - p.off), block_end(pos) - pos);
    };
    uint64_t pos = p.off;
    while (pos < end) {
        uint64_t start = pos;
        bool zero = block_zero(pos);
        pos = block_end(pos);
        while (pos < end && block_zero(pos) == zero)
            pos = block_end(pos);
        if (zero)
            r = co_await zero_range(start, pos - start);
        else
            r = co_await write_data(start, buf + (start - p.off), pos - start);
        if (r < 0)
            co_return r;
    }
    co_return 0;
}

Task<int> Copier::write_data(uint64_t off, const uint8_t* buf, uint64_t len)
{
    int r = co_await dst_.pwrite(off, buf, len);
    if (r < 0)
        fail("writing", dst_name_, off, r);
    co_return r;
}

Task<int> Copier::zero_range(uint64_t off, uint64_t len)
{
    if (cfg_.target_zeroed)
        co_return 0;
    int r = co_await dst_.write_zeroes(off, len, 0);
    if (r != -ENOTSUP) {
        if (r < 0)
            fail("zeroing", dst_name_, off, r);
        co_return r;
    }
    // No write_zeroes on this target: write zero-filled buffers.
    if (!zeros_) {
        zeros_ = make_buffer(cfg_.chunk);
        if (!zeros_) {
            fail("zeroing", dst_name_, off, -ENOMEM);
            co_return -ENOMEM;
        }
        std::memset(zeros_.get(), 0, cfg_.chunk);
    }
    for (uint64_t done = 0; done < len;) {
        uint64_t n = std::min(len - done, cfg_.chunk);
        r = co_await write_data(off + done, zeros_.get(), n);
        if (r < 0)
            co_return r;
        done += n;
    }
    co_return 0;
}

void Copier::fail(std::string_view what, std::string_view uri, uint64_t off, int err)
{
    if (!failure_)
        failure_ = Error{-err, io_error(what, uri, off, err)};
}

} // namespace coblk::img
