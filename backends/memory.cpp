#include "backends/memory.h"

#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include "uri/options.h"

namespace coblk {

// Sparse storage in 64 KiB chunks; a missing chunk reads as zeros. Shared by
// every device opened on the same name, possibly on several threads.
struct MemoryStore {
    static constexpr uint64_t kChunk = 64 * 1024;
    std::mutex mu;
    uint64_t size = 0;
    std::unordered_map<uint64_t, std::unique_ptr<char[]>> chunks;

    // Calls fn(chunk or null, offset in chunk, bytes, bytes done so far) for
    // each chunk piece of [off, off+len); `create` allocates missing chunks.
    template <typename Fn>
    void walk(uint64_t off, uint64_t len, bool create, Fn fn)
    {
        uint64_t done = 0;
        while (done < len) {
            uint64_t idx = (off + done) / kChunk, in = (off + done) % kChunk;
            uint64_t n = std::min(len - done, kChunk - in);
            auto it = chunks.find(idx);
            char* c = it == chunks.end() ? nullptr : it->second.get();
            if (!c && create) {
                auto mem = std::make_unique<char[]>(kChunk);  // zeroed
                c = mem.get();
                chunks.emplace(idx, std::move(mem));
            }
            fn(c, in, n, done);
            done += n;
        }
    }

    // Drops whole chunks inside [off, off+len) and zeroes the partial ends.
    void zero(uint64_t off, uint64_t len)
    {
        walk(off, len, false, [&](char* c, uint64_t in, uint64_t n, uint64_t done) {
            if (!c)
                return;
            if (n == kChunk)
                chunks.erase((off + done) / kChunk);
            else
                std::memset(c + in, 0, n);
        });
    }
};

namespace {

std::mutex registry_mu;
std::map<std::string, std::shared_ptr<MemoryStore>>& registry()
{
    static std::map<std::string, std::shared_ptr<MemoryStore>> r;
    return r;
}

} // namespace

Result<std::unique_ptr<MemoryLayer>> MemoryLayer::open(const uri::Options& opts, bool read_only)
{
    if (auto r = uri::check_known_options(opts, {"size", "name"}, "memory"); !r)
        return r.error();
    std::optional<uint64_t> size;
    if (auto v = uri::find_option(opts, "size")) {
        auto s = uri::parse_size(*v, "memory size");
        if (!s)
            return s.error();
        size = *s;
    }
    std::shared_ptr<MemoryStore> store;
    auto name = uri::find_option(opts, "name");
    if (name && !name->empty()) {
        std::lock_guard g(registry_mu);
        auto& slot = registry()[*name];
        if (!slot) {
            slot = std::make_shared<MemoryStore>();
            slot->size = size.value_or(64 << 20);
        } else if (size && *size != slot->size) {
            return make_error(EINVAL, "memory store '{}' exists with size {}, not {}", *name,
                              slot->size, *size);
        }
        store = slot;
    } else {
        store = std::make_shared<MemoryStore>();
        store->size = size.value_or(64 << 20);
    }
    std::unique_ptr<MemoryLayer> m(new MemoryLayer(store));
    m->size_ = store->size;
    m->read_only_ = read_only;
    m->limits_.discard = true;
    m->limits_.write_zeroes = true;
    m->limits_.fua = true;
    return m;
}

MemoryLayer::~MemoryLayer() = default;

void MemoryLayer::drop(const std::string& name)
{
    std::lock_guard g(registry_mu);
    registry().erase(name);
}

int64_t MemoryLayer::allocated_bytes() const
{
    std::lock_guard g(store_->mu);
    return int64_t(store_->chunks.size() * MemoryStore::kChunk);
}

Task<int> MemoryLayer::do_preadv(uint64_t off, const iovec* iov, int iovcnt, unsigned)
{
    std::lock_guard g(store_->mu);
    store_->walk(off, iov_length(iov, iovcnt), false,
                 [&](char* c, uint64_t in, uint64_t n, uint64_t done) {
                     if (c)
                         buf_to_iov(c + in, n, iov, iovcnt, done);
                     else
                         iov_memset(iov, iovcnt, done, 0, n);
                 });
    co_return 0;
}

Task<int> MemoryLayer::do_pwritev(uint64_t off, const iovec* iov, int iovcnt, unsigned)
{
    std::lock_guard g(store_->mu);
    store_->walk(off, iov_length(iov, iovcnt), true,
                 [&](char* c, uint64_t in, uint64_t n, uint64_t done) {
                     iov_to_buf(iov, iovcnt, done, c + in, n);
                 });
    co_return 0;
}

Task<int> MemoryLayer::do_discard(uint64_t off, uint64_t len)
{
    std::lock_guard g(store_->mu);
    store_->zero(off, len);
    co_return 0;
}

Task<int> MemoryLayer::do_write_zeroes(uint64_t off, uint64_t len, unsigned)
{
    std::lock_guard g(store_->mu);
    store_->zero(off, len);
    co_return 0;
}

Task<int> MemoryLayer::do_truncate(uint64_t size)
{
    std::lock_guard g(store_->mu);
    if (size < store_->size)
        store_->zero(size, store_->size - size);
    store_->size = size;
    size_ = size;
    co_return 0;
}

Task<int> MemoryLayer::do_block_status(uint64_t off, uint64_t len, Extent* out)
{
    std::lock_guard g(store_->mu);
    len = std::min(len, size_ - off);
    bool first = store_->chunks.count(off / MemoryStore::kChunk) != 0;
    uint64_t n = 0;
    store_->walk(off, len, false, [&](char* c, uint64_t, uint64_t piece, uint64_t done) {
        if (n == done && (c != nullptr) == first)
            n += piece;
    });
    out->len = n;
    out->data = first;
    out->zero = !first;
    co_return 0;
}

} // namespace coblk
