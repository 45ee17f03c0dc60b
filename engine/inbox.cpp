#include "engine/inbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

namespace coblk {

Inbox::Inbox()
{
    efd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ < 0)
        throw std::system_error(errno, std::generic_category(), "coblk: eventfd for the loop inbox");
}

Inbox::~Inbox()
{
    // A producer signals the eventfd after its item is visible, and the loop
    // may resume that item's coroutine, finish and be destroyed in between:
    // wait for such a producer to leave push() before the fd and memory go.
    while (pushers_.load() != 0)
        std::this_thread::yield();
    if (efd_ >= 0)
        ::close(efd_);
}

void Inbox::push(InboxItem* item) noexcept
{
    pushers_.fetch_add(1);
    InboxItem* old = head_.load(std::memory_order_relaxed);
    do {
        item->next = old;
    } while (!head_.compare_exchange_weak(old, item, std::memory_order_seq_cst,
                                          std::memory_order_relaxed));
    // Sequentially consistent, with set_quiet(false) and take_all(): a
    // producer that still reads quiet after the loop has cleared it pushed
    // before the loop's take_all, which then finds its item.
    if (old == nullptr && !quiet_.load()) {
        // Only the first producer after a drain signals; a failed write can
        // only be EAGAIN (counter saturated), which still leaves it readable.
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(efd_, &one, sizeof one);
    }
    pushers_.fetch_sub(1);
}

InboxItem* Inbox::take_all() noexcept
{
    InboxItem* list = head_.exchange(nullptr, std::memory_order_seq_cst);
    InboxItem* reversed = nullptr;
    while (list) {
        InboxItem* next = list->next;
        list->next = reversed;
        reversed = list;
        list = next;
    }
    return reversed;
}

} // namespace coblk
