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
    } while (!head_.compare_exchange_weak(old, item, std::memory_order_release,
                                          std::memory_order_relaxed));
    if (old == nullptr) {
        // Only the first producer after a drain signals; a failed write can
        // only be EAGAIN (counter saturated), which still leaves it readable.
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(efd_, &one, sizeof one);
    }
    pushers_.fetch_sub(1);
}

bool Inbox::hold(InboxItem* marker) noexcept
{
    InboxItem* expected = nullptr;
    marker->next = nullptr;
    return head_.compare_exchange_strong(expected, marker, std::memory_order_release,
                                         std::memory_order_relaxed);
}

InboxItem* Inbox::take_all() noexcept
{
    InboxItem* list = head_.exchange(nullptr, std::memory_order_acquire);
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
