/*
 * no-uring-exec ERRNO COMMAND [ARG...]: runs COMMAND with io_uring made
 * unavailable the way a container runtime does it: a seccomp-bpf filter
 * that fails io_uring_setup with ERRNO (ENOSYS or EPERM) and allows
 * everything else. The filter is inherited across exec and cannot be lifted.
 * Before exec it checks that io_uring_setup really fails with ERRNO.
 * Exit status: COMMAND's; 2 for bad usage; 1 when the filter cannot be set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NO_URING_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NO_URING_ARCH AUDIT_ARCH_AARCH64
#else
#error "no-uring-exec knows the audit arch of x86_64 and aarch64 only"
#endif

int main(int argc, char** argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ENOSYS|EPERM COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    int err;
    if (strcmp(argv[1], "ENOSYS") == 0)
        err = ENOSYS;
    else if (strcmp(argv[1], "EPERM") == 0)
        err = EPERM;
    else {
        fprintf(stderr, "%s: unknown errno '%s' (ENOSYS or EPERM)\n", argv[0], argv[1]);
        return 2;
    }

    struct sock_filter filter[] = {
        /* A system call of another ABI (e.g. i386 on x86_64) has other
         * numbers: the filter cannot judge it, so the process dies. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NO_URING_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        fprintf(stderr, "%s: prctl(PR_SET_NO_NEW_PRIVS): %s\n", argv[0], strerror(errno));
        return 1;
    }
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        fprintf(stderr, "%s: seccomp(SECCOMP_SET_MODE_FILTER): %s\n", argv[0], strerror(errno));
        return 1;
    }

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(__NR_io_uring_setup, 4, &p);
    if (fd >= 0 || errno != err) {
        fprintf(stderr, "%s: io_uring_setup still %s under the filter\n", argv[0],
                fd >= 0 ? "works" : strerror(errno));
        return 1;
    }

    execvp(argv[2], argv + 2);
    fprintf(stderr, "%s: cannot run '%s': %s\n", argv[0], argv[2], strerror(errno));
    return 127;
}
