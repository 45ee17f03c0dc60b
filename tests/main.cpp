// The test runner's main(): Catch2's, after installing a handler that
// prints the crashing thread's stack on SIGSEGV, SIGABRT, SIGBUS, SIGFPE and
// SIGILL. A crash inside a library (libgfapi, librados) seen once in CI
// then says where it happened. Catch2 installs its own handlers around each
// test case, reports the test, and raises the signal again, which reaches
// this one. Left out under ASan and TSan, which print their own stacks and
// would report the handler's calls.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define COBLK_TESTS_CRASH_STACKS 1
#endif

namespace {

#ifdef COBLK_TESTS_CRASH_STACKS
void write_str(const char* s)
{
    ssize_t n = write(STDERR_FILENO, s, strlen(s));
    (void)n;
}

const char* signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    default: return "?";
    }
}

// Prints this thread's stack to stderr, then lets the signal take its
// default action. Runs on the crashing thread; uses only write() and
// backtrace_symbols_fd(), which does not allocate (backtrace() was called
// once at startup, so its library is already loaded).
void print_stack(int sig)
{
    write_str("\ncoblk-tests: fatal signal ");
    write_str(signal_name(sig));
    write_str("; the crashing thread's stack:\n");
    void* frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_crash_stacks()
{
    void* warm[1];
    backtrace(warm, 1);
    struct sigaction sa {};
    sa.sa_handler = print_stack;
    sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL})
        sigaction(sig, &sa, nullptr);
}
#endif

} // namespace

// Aborts, for tests/crash_stack.sh: its name must show in the printed stack.
// Out of line and with external linkage so that the stack can name it; the
// call goes through a pointer so that code follows it, and the return
// address the stack holds still lies inside this function.
__attribute__((noinline)) void coblk_tests_crash_on_purpose()
{
    void (*volatile abort_fn)() = std::abort;
    abort_fn();
    asm volatile("" ::: "memory");
}

// Hidden (not run unless named): a thread other than main aborts.
TEST_CASE("crash stack: a thread that aborts", "[.crash-stack]")
{
    std::thread t(coblk_tests_crash_on_purpose);
    t.join();
}

int main(int argc, char* argv[])
{
#ifdef COBLK_TESTS_CRASH_STACKS
    install_crash_stacks();
#endif
    return Catch::Session().run(argc, argv);
}
