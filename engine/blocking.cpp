#include "engine/blocking.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace coblk {
namespace {

// Worker threads start when a job finds none idle, and are joined at process
// exit.
class WorkerPool {
public:
    static WorkerPool& instance()
    {
        static WorkerPool pool;
        return pool;
    }

    // Queues `job`, starting a thread when none is idle. Throws (and keeps
    // nothing) only when the job cannot be queued or no thread can run it.
    void submit(std::function<void()> job)
    {
        {
            std::lock_guard<std::mutex> g(mu_);
            jobs_.push_back(std::move(job));
            if (idle_ == 0 && threads_.size() < kMaxThreads) {
                try {
                    threads_.emplace_back([this] { work(); });
                } catch (...) {
                    // The threads there are will get to it; with none, give up.
                    if (threads_.empty()) {
                        jobs_.pop_back();
                        throw;
                    }
                }
            }
        }
        cv_.notify_one();
    }

    ~WorkerPool()
    {
        {
            std::lock_guard<std::mutex> g(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_)
            t.join();
    }

private:
    // Up to 64 threads, as QEMU's thread pool: besides the occasional
    // blocking call, a loop without io_uring runs all its file I/O here
    // (engine/loop_workers.cpp), up to its queue depth at once.
    static constexpr size_t kMaxThreads = 64;

    void work()
    {
        std::unique_lock<std::mutex> g(mu_);
        for (;;) {
            idle_++;
            cv_.wait(g, [this] { return stopping_ || !jobs_.empty(); });
            idle_--;
            if (jobs_.empty())
                return;
            auto job = std::move(jobs_.front());
            jobs_.pop_front();
            g.unlock();
            job();
            g.lock();
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    std::vector<std::thread> threads_;
    size_t idle_ = 0;
    bool stopping_ = false;
};

} // namespace

void submit_blocking(std::function<void()> job)
{
    WorkerPool::instance().submit(std::move(job));
}

} // namespace coblk
