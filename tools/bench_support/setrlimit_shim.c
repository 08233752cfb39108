/*
 * LD_PRELOAD shim for tools/bench-cluster: lets `sanlock daemon` start in a
 * container that lacks CAP_SYS_RESOURCE.
 *
 * sanlock 3.8 calls setrlimit(RLIMIT_MEMLOCK, unlimited) and
 * setrlimit(RLIMIT_RTPRIO, unlimited) at start-up and exits when either
 * fails, even with `-l 0` (no mlockall) and `-h 0` (no real-time
 * scheduling), which is how the benchmark runs it.  Neither limit matters
 * then, so this shim reports success for those two and passes every other
 * call through.  It changes nothing in the lease algorithm or its timeouts.
 * The benchmark compiles it (cc -shared -fPIC) only when a test shows the
 * limits cannot be raised.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/resource.h>

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
    static int (*real)(__rlimit_resource_t, const struct rlimit *);

    if (resource == RLIMIT_MEMLOCK || resource == RLIMIT_RTPRIO)
        return 0;
    if (!real)
        real = (int (*)(__rlimit_resource_t, const struct rlimit *))dlsym(RTLD_NEXT, "setrlimit");
    return real(resource, rlim);
}
