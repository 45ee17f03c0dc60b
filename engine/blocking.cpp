#include "engine/blocking.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace coblk {
namespace {

// Worker threads start on first use and are joined at process exit.
class WorkerPool {
public:
    static WorkerPool& instance()
    {
        static WorkerPool pool;
        return pool;
    }

    void submit(std::function<void()> job)
    {
        {
            std::lock_guard<std::mutex> g(mu_);
            jobs_.push_back(std::move(job));
            if (idle_ == 0 && threads_.size() < kMaxThreads)
                threads_.emplace_back([this] { work(); });
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
    static constexpr size_t kMaxThreads = 8;

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
