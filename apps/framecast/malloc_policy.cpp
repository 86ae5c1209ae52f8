// A relay allocates a unit per batch of messages in one thread (the stdin source's, a
// publisher's read) and frees it in another once every client has sent it. glibc gives the
// free memory at the top of a heap back to the kernel once it exceeds the trim threshold
// (128 KiB by default), and the next burst faults every page back in: on the 100 B relay that
// was half the server's CPU (page faults and the copies into fresh pages; 10,000-20,000 faults
// per 2 M messages, ~1,100 with the values below; see docs/bench.md). Large messages are
// mmap'd and unmapped one by one until glibc's own heuristic raises the mmap threshold.
//
// So the process starts where that heuristic ends after one large free: allocations up to
// 32 MiB come from the heap, and up to 64 MiB of free memory stays for reuse. Every buffer
// is still bounded by --memory-limit and the per-client limits; this only decides whether
// freed memory goes back to the kernel at once or after the process has stopped reusing it
// (resident memory after a burst stays up to 64 MiB above what is in use, per heap).
#include "malloc_policy.hpp"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace framecast::app {

namespace {

bool user_tuned() {
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return true;
    return std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr ||
           std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr;
}

}  // namespace

void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
    if (user_tuned()) return;
    constexpr int mmap_threshold = 32 << 20;  // glibc's own dynamic ceiling (64-bit)
    constexpr int trim_threshold = 2 * mmap_threshold;  // glibc's rule: twice the mmap threshold
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
#endif
}

}  // namespace framecast::app
