// FVD snapshots (docs/fvd-format.md, "Snapshots"): external ones. Taking
// snapshot NAME of image IMG turns the current file into the snapshot
// "IMG.snap-NAME" and puts a new, empty overlay over it at IMG's name; the
// open layer switches to the overlay in place, with requests held back
// around the switch.
#include "formats/fvd.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace coblk {
namespace {

// The last component of an image name ("dir/disk.fvd" -> "disk.fvd"; the
// query of a URI is not part of it).
std::string file_part(std::string_view image)
{
    image = image.substr(0, image.find('?'));
    size_t slash = image.rfind('/');
    return std::string(slash == std::string_view::npos ? image : image.substr(slash + 1));
}

// The name of sibling `rel` of `image`, for messages.
std::string sibling_name(std::string_view image, const std::string& rel)
{
    image = image.substr(0, image.find('?'));
    size_t slash = image.rfind('/');
    return slash == std::string_view::npos ? rel : std::string(image.substr(0, slash + 1)) + rel;
}

constexpr std::string_view kSnapInfix = ".snap-";

} // namespace

std::string FvdLayer::snapshot_file(std::string_view image, std::string_view name)
{
    return file_part(image) + std::string(kSnapInfix) + std::string(name);
}

Result<void> FvdLayer::check_snapshot_name(std::string_view name)
{
    constexpr size_t kMaxName = 128;
    if (name.empty())
        return make_error(EINVAL, "invalid snapshot name: it is empty");
    if (name.size() > kMaxName)
        return make_error(EINVAL, "invalid snapshot name '{}...': longer than {} bytes",
                          name.substr(0, 32), kMaxName);
    if (name[0] == '.')
        return make_error(EINVAL, "invalid snapshot name '{}': it starts with '.'", name);
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '+' || c == '-';
        if (!ok) {
            std::string shown = c == '\0' ? "NUL" : c == '/' ? "'/'" : fmt::format("{:#04x}",
                                                                                   unsigned(uint8_t(c)));
            return make_error(EINVAL, "invalid snapshot name '{}': it holds {} (allowed: "
                              "letters, digits, '.', '_', '+', '-')",
                              std::string(name.data(), strnlen(name.data(), name.size())), shown);
        }
    }
    return {};
}

std::string FvdLayer::snapshot_name(const std::string& base_name) const
{
    std::string file = file_part(base_name);
    std::string prefix = file_part(name_) + std::string(kSnapInfix);
    if (file.starts_with(prefix) && file.size() > prefix.size())
        return file.substr(prefix.size());
    return file;   // the image was renamed since: the file name is the best name left
}

void FvdLayer::take_state(FvdLayer& from)
{
    child_ = std::move(from.child_);
    base_ = std::move(from.base_);
    hdr_ = std::exchange(from.hdr_, {});
    block_shift_ = from.block_shift_;
    chunk_shift_ = from.chunk_shift_;
    base_limit_ = std::exchange(from.base_limit_, 0);
    fresh_ = std::exchange(from.fresh_, {});
    durable_ = std::exchange(from.durable_, {});
    queued_ = std::exchange(from.queued_, {});
    fresh_table_ = std::exchange(from.fresh_table_, {});
    durable_table_ = std::exchange(from.durable_table_, {});
    table_queued_ = std::exchange(from.table_queued_, {});
    pending_blocks_ = std::exchange(from.pending_blocks_, {});
    pending_chunks_ = std::exchange(from.pending_chunks_, {});
    free_chunks_ = std::exchange(from.free_chunks_, {});
    next_chunk_ = std::exchange(from.next_chunk_, 0);
    zero_from_chunk_ = std::exchange(from.zero_from_chunk_, UINT64_MAX);
    free_at_open_ = std::exchange(from.free_at_open_, 0);
    journal_pos_ = std::exchange(from.journal_pos_, 0);
    journal_seq_ = std::exchange(from.journal_seq_, 1);
    replayed_ = std::exchange(from.replayed_, 0);
    opts_ = from.opts_;
    loop_ = from.loop_;
    cor_ = std::exchange(from.cor_, false);
    cor_blocks_ = std::exchange(from.cor_blocks_, 0);
    prefetched_blocks_ = std::exchange(from.prefetched_blocks_, 0);
    size_ = from.size_;
    limits_ = from.limits_;
    read_only_ = from.read_only_;
}

Task<void> FvdLayer::hold()
{
    held_ = true;
    unheld_.add();
    co_await io_.wait();
    stopping_ = true;
    co_await background_.join();
    stopping_ = false;
}

void FvdLayer::release()
{
    held_ = false;
    unheld_.done();
    start_background();
}

Task<void> FvdLayer::mark_in_use()
{
    if (hdr_.clean) {
        hdr_.clean = false;
        co_await write_header();
    }
}

Task<Result<void>> FvdLayer::adopt(std::unique_ptr<Layer>& child, std::unique_ptr<Layer>& base)
{
    std::unique_ptr<FvdLayer> saved(new FvdLayer(nullptr, name_));
    saved->take_state(*this);
    child_ = std::move(child);
    FvdBaseOpener opener = [&base](std::string, std::string) -> Task<Result<std::unique_ptr<Layer>>> {
        if (!base)
            co_return make_error(EINVAL, "the snapshot is already in use");
        co_return std::move(base);
    };
    auto r = co_await load(false, &opener);
    if (!r) {
        if (!base)
            base = std::move(base_);
        child = std::move(child_);
        take_state(*saved);
        co_return r.error();
    }
    co_return Result<void>{};
}

Task<Result<std::unique_ptr<Layer>>> FvdLayer::make_overlay(const std::string& rel,
                                                            const std::string& base_rel,
                                                            uint64_t base_size)
{
    fvd::Geometry g;
    g.virtual_size = hdr_.virtual_size;
    g.block_size = hdr_.block_size;
    g.chunk_size = hdr_.chunk_size;
    g.compact = hdr_.compact();
    g.journal_size = hdr_.journal_size;
    auto h = fvd::layout(g);
    if (!h)
        co_return h.error();
    h->compatible = (hdr_.compatible & (fvd::kCompatCopyOnRead | fvd::kCompatPrefetch)) |
                    fvd::kCompatBaseIsSnapshot;
    h->base_name = base_rel;
    h->base_format = "fvd";
    h->base_size = base_size;
    uint64_t storage = h->data_offset + (h->compact() ? 0 : h->virtual_size);
    auto made = co_await siblings_->create(rel, storage);
    if (!made)
        co_return made.error();
    std::unique_ptr<Layer> c = std::move(made).value();
    int e = co_await FvdLayer::format(*c, *h);
    if (e < 0) {
        co_await c->close();
        co_return make_error(-e, "cannot write the new overlay '{}': {}", rel, std::strerror(-e));
    }
    co_return std::move(c);
}

// ------------------------------------------------------------------ create

// The steps, in an order that leaves an openable image at IMG after a
// crash at any point (docs/fvd-format.md lists the states):
//  1. the image's data and metadata are flushed and written back clean;
//  2. IMG gets a second name, the snapshot file S (a hard link), synced;
//  3. a new overlay over S is written under a temporary name T and synced,
//     and this layer switches to it in memory (the old image, read-only
//     now, is its base);
//  4. T is renamed over IMG, and the directory synced.
Task<Result<void>> FvdLayer::create_held(const std::string& name)
{
    const std::string snap = snapshot_file(name_, name);
    const std::string tmp = "." + snap + ".new";
    auto stop = [&](int step) { return stop_after_step_ == step; };
    auto stopped = [&](int step) {
        return make_error(ECANCELED, "snapshot '{}' of '{}' stopped after step {} (test)", name,
                          name_, step);
    };

    int e = co_await commit();
    if (e == 0)
        e = co_await write_back(fresh_, fresh_table_, true);
    if (e < 0) {
        co_await mark_in_use();
        co_return make_error(-e, "cannot create snapshot '{}' of '{}': flushing the image "
                             "failed: {}", name, name_, std::strerror(-e));
    }
    durable_ = fresh_;
    durable_table_ = fresh_table_;
    if (stop(1))
        co_return stopped(1);

    if (auto l = co_await siblings_->link_image(snap); !l) {
        co_await mark_in_use();
        co_return make_error(l.error().code, "cannot create snapshot '{}' of '{}': {}", name,
                             name_, l.error().message);
    }
    if (stop(2))
        co_return stopped(2);

    auto undo_link = [&]() -> Task<void> {
        co_await siblings_->remove(tmp);
        co_await siblings_->remove(snap);
        co_await mark_in_use();
    };
    auto made = co_await make_overlay(tmp, snap, hdr_.virtual_size);
    if (!made) {
        co_await undo_link();
        co_return make_error(made.error().code, "cannot create snapshot '{}' of '{}': {}", name,
                             name_, made.error().message);
    }
    std::unique_ptr<Layer> child = std::move(made).value();

    // The old image becomes the new overlay's base, read-only from now on.
    std::unique_ptr<FvdLayer> old(new FvdLayer(nullptr, sibling_name(name_, snap)));
    old->take_state(*this);
    old->read_only_ = true;
    old->cor_ = false;
    std::unique_ptr<Layer> base = std::move(old);
    auto a = co_await adopt(child, base);
    if (!a) {
        auto* back = static_cast<FvdLayer*>(base.get());
        take_state(*back);
        read_only_ = false;
        co_await child->close();
        co_await undo_link();
        co_return make_error(a.error().code, "cannot create snapshot '{}' of '{}': opening the "
                             "new overlay failed: {}", name, name_, a.error().message);
    }
    if (stop(3))
        co_return stopped(3);

    bool moved = false;
    auto renamed = co_await siblings_->replace_image(tmp, moved);
    if (!moved) {
        // Not renamed: IMG is still the old image. Go back to it.
        std::unique_ptr<FvdLayer> cur(new FvdLayer(nullptr, name_));
        cur->take_state(*this);
        std::unique_ptr<Layer> prev = std::move(cur->base_);
        cur->read_only_ = true;   // closing it writes nothing
        co_await cur->close();
        take_state(*static_cast<FvdLayer*>(prev.get()));
        read_only_ = false;
        co_await undo_link();
        co_return make_error(renamed.error().code, "cannot create snapshot '{}' of '{}': {}",
                             name, name_, renamed.error().message);
    }
    if (!renamed)   // renamed, but the directory sync failed: the switch stands
        co_return make_error(renamed.error().code, "snapshot '{}' of '{}' was taken, but {}",
                             name, name_, renamed.error().message);
    if (stop(4))
        co_return stopped(4);
    co_return Result<void>{};
}

Task<Result<void>> FvdLayer::do_snapshot_create(const std::string& name)
{
    if (auto c = check_snapshot_name(name); !c)
        co_return make_error(EINVAL, "cannot create a snapshot of '{}': {}", name_,
                             c.error().message);
    if (!siblings_)
        co_return make_error(ENOTSUP, "cannot create snapshot '{}' of '{}': it was opened "
                             "without access to its directory", name, name_);
    if (auto s = siblings_->supported(); !s)
        co_return make_error(ENOTSUP, "cannot create snapshot '{}' of '{}': {}", name, name_,
                             s.error().message);
    auto guard = co_await snap_lock_.lock();
    co_await hold();
    auto r = co_await create_held(name);
    release();
    co_return r;
}

// ------------------------------------------------------------------ list

Task<Result<std::vector<SnapshotInfo>>> FvdLayer::do_snapshot_list()
{
    std::vector<SnapshotInfo> out;
    const FvdLayer* l = this;
    uint64_t depth = 1;
    while (l && (l->hdr_.compatible & fvd::kCompatBaseIsSnapshot) && !l->hdr_.base_name.empty()) {
        SnapshotInfo s;
        s.name = snapshot_name(l->hdr_.base_name);
        s.id = depth++;
        s.size = l->hdr_.base_size;
        out.push_back(std::move(s));
        // A base left closed (base_copied) hides the snapshots below it.
        l = dynamic_cast<const FvdLayer*>(l->base_.get());
    }
    std::reverse(out.begin(), out.end());   // oldest first, as rbd and qemu-img list
    co_return out;
}

// ------------------------------------------------------------------ revert

// Writes a new empty overlay over the latest snapshot under a temporary
// name and renames it over IMG: a crash leaves either the old overlay or
// the empty one at IMG.
Task<Result<void>> FvdLayer::revert_held(const std::string& name)
{
    const std::string tmp = "." + snapshot_file(name_, name) + ".new";
    auto made = co_await make_overlay(tmp, hdr_.base_name, hdr_.base_size);
    if (!made)
        co_return make_error(made.error().code, "cannot revert '{}' to snapshot '{}': {}", name_,
                             name, made.error().message);
    std::unique_ptr<Layer> child = std::move(made).value();
    std::unique_ptr<FvdLayer> discarded(new FvdLayer(nullptr, name_));
    discarded->take_state(*this);
    std::unique_ptr<Layer> base = std::move(discarded->base_);
    auto a = co_await adopt(child, base);
    auto put_back = [&]() -> Task<void> {
        discarded->base_ = std::move(base);
        take_state(*discarded);
        co_await child->close();
        co_await siblings_->remove(tmp);
    };
    if (!a) {
        co_await put_back();
        co_return make_error(a.error().code, "cannot revert '{}' to snapshot '{}': opening the "
                             "new overlay failed: {}", name_, name, a.error().message);
    }
    bool moved = false;
    auto renamed = co_await siblings_->replace_image(tmp, moved);
    if (!moved) {
        child = std::move(child_);
        base = std::move(base_);
        FvdLayer scratch(nullptr, name_);
        scratch.take_state(*this);   // the new overlay's state, dropped
        co_await put_back();
        co_return make_error(renamed.error().code, "cannot revert '{}' to snapshot '{}': {}",
                             name_, name, renamed.error().message);
    }
    // The old overlay's writes are dropped: close its file without a
    // write-back.
    discarded->read_only_ = true;
    co_await discarded->close();
    if (!renamed)
        co_return make_error(renamed.error().code, "'{}' was reverted to snapshot '{}', but {}",
                             name_, name, renamed.error().message);
    co_return Result<void>{};
}

// The checks revert and delete share: `name` must be this image's latest
// snapshot, and the image must reach its directory. Each message starts
// with `what`; `older` says why a snapshot other than the latest is
// refused. Loop thread, under snap_lock_.
Task<Result<void>> FvdLayer::check_latest_snapshot(const std::string& name,
                                                   const std::string& what, const char* older)
{
    auto list = co_await do_snapshot_list();
    if (!list)
        co_return list.error();
    bool known = false;
    for (const auto& s : *list)
        known = known || s.name == name;
    if (!known)
        co_return make_error(ENOENT, "{}: it has no such snapshot", what);
    if (name != list->back().name)
        co_return make_error(ENOTSUP, "{}: {} (the latest is '{}')", what, older,
                             list->back().name);
    if (!siblings_)
        co_return make_error(ENOTSUP, "{}: it was opened without access to its directory", what);
    if (auto s = siblings_->supported(); !s)
        co_return make_error(ENOTSUP, "{}: {}", what, s.error().message);
    co_return Result<void>{};
}

Task<Result<void>> FvdLayer::do_snapshot_revert(const std::string& name)
{
    auto guard = co_await snap_lock_.lock();
    std::string what = fmt::format("cannot revert '{}' to snapshot '{}'", name_, name);
    auto ok = co_await check_latest_snapshot(name, what, "later snapshots are built on it; an "
                                             "FVD image reverts only to its latest snapshot");
    if (!ok)
        co_return ok.error();
    if (!base_)
        co_return make_error(ENOTSUP, "{}: the snapshot is not open (every block was copied "
                             "into the image: base_copied)", what);
    co_await hold();
    auto r = co_await revert_held(name);
    release();
    co_return r;
}

// ------------------------------------------------------------------ delete

// Merges the latest snapshot S into the image and drops it, in an order
// that keeps the image's content whatever a crash interrupts:
//  1. every block the image lacks and S holds is copied into the image,
//     and that is made durable (the copies equal what the image read
//     through S);
//  2. the header names S's base instead of S (one sector write);
//  3. S's file is removed.
Task<Result<void>> FvdLayer::delete_held(const std::string& name)
{
    auto* s = dynamic_cast<FvdLayer*>(base_.get());
    auto fail = [&](int e, std::string why) {
        return make_error(e, "cannot delete snapshot '{}' of '{}': {}", name, name_, why);
    };
    if (!s)
        co_return fail(ENOTSUP, "the snapshot is not open (every block was copied into the "
                       "image: base_copied)");
    if (s->hdr_.block_size != hdr_.block_size || s->hdr_.virtual_size != hdr_.virtual_size)
        co_return fail(ENOTSUP, "the snapshot's geometry differs from the image's");
    if (!s->hdr_.base_name.empty() && !s->base_)
        co_return fail(ENOTSUP, fmt::format("the snapshot's base '{}' is not open",
                                            s->hdr_.base_name));

    constexpr uint64_t kStep = 1 << 20;
    std::vector<uint8_t> buf(std::max<uint64_t>(kStep, hdr_.block_size));
    const uint64_t nblocks = hdr_.blocks(), per_step = std::max<uint64_t>(1, kStep >> block_shift_);
    auto wanted = [&](uint64_t b) {
        return !fresh_.test(b) && block_start(b) < base_limit_ && s->fresh_.test(b);
    };
    for (uint64_t b = 0; b < nblocks;) {
        if (!wanted(b)) {
            b++;
            continue;
        }
        uint64_t n = 1;
        while (n < per_step && b + n < nblocks && wanted(b + n))
            n++;
        uint64_t lo = block_start(b), len = block_end(b + n - 1) - lo;
        iovec v{buf.data(), size_t(len)};
        int e = co_await base_read(lo, &v, 1);   // S's bytes as the image saw them
        if (e == 0)
            e = co_await write_impl(lo, &v, 1, 0);
        if (e < 0)
            co_return fail(-e, fmt::format("copying its blocks into the image failed: {}",
                                           std::strerror(-e)));
        b += n;
    }
    if (int e = co_await commit(); e < 0)
        co_return fail(-e, fmt::format("flushing the image failed: {}", std::strerror(-e)));
    if (stop_after_step_ == 1)
        co_return make_error(ECANCELED, "deleting snapshot '{}' stopped after step 1 (test)",
                             name);

    {
        auto guard = co_await commit_lock_.lock();
        fvd::Header before = hdr_;
        hdr_.base_name = s->hdr_.base_name;
        hdr_.base_format = s->hdr_.base_format;
        hdr_.base_size = hdr_.base_name.empty() ? 0 : std::min(hdr_.base_size, s->hdr_.base_size);
        hdr_.compatible &= ~(fvd::kCompatBaseCopied | fvd::kCompatBaseIsSnapshot);
        hdr_.compatible |= s->hdr_.compatible & fvd::kCompatBaseIsSnapshot;
        if (int e = co_await write_header(); e < 0) {
            hdr_ = before;
            co_return fail(-e, fmt::format("writing the image's header failed: {}",
                                           std::strerror(-e)));
        }
    }
    std::unique_ptr<Layer> gone = std::move(base_);
    base_ = std::move(s->base_);
    base_limit_ = base_ ? std::min(hdr_.base_size, base_->size()) : 0;
    co_await gone->close();
    if (stop_after_step_ == 2)
        co_return make_error(ECANCELED, "deleting snapshot '{}' stopped after step 2 (test)",
                             name);
    std::string file = snapshot_file(name_, name);
    if (auto r = co_await siblings_->remove(file); !r)
        co_return make_error(r.error().code, "snapshot '{}' of '{}' was merged into it, but {}",
                             name, name_, r.error().message);
    co_return Result<void>{};
}

Task<Result<void>> FvdLayer::do_snapshot_delete(const std::string& name)
{
    auto guard = co_await snap_lock_.lock();
    std::string what = fmt::format("cannot delete snapshot '{}' of '{}'", name, name_);
    auto ok = co_await check_latest_snapshot(name, what, "only the latest snapshot can be "
                                             "deleted in this version (an older one would be "
                                             "merged into a read-only snapshot file)");
    if (!ok)
        co_return ok.error();
    co_await hold();
    auto r = co_await delete_held(name);
    release();
    co_return r;
}

} // namespace coblk
