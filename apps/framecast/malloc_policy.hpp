// How the process asks glibc's allocator to keep memory it frees (see malloc_policy.cpp).
#pragma once

namespace framecast::app {

// Called first thing in main(). Does nothing when the user tuned the allocator through the
// environment (GLIBC_TUNABLES naming glibc.malloc, MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_).
void keep_freed_memory_for_reuse();

}  // namespace framecast::app
