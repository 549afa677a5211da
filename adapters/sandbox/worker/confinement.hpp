// What a call's process may do: kernel resource limits and a seccomp filter, applied in the
// forked call process after fork and before any handler code runs.
//
// The filter (built once in the zygote, loaded per call) returns EPERM for: creating sockets
// and connecting (unless `allow_network`), fork/vfork/clone and exec, signalling any process
// (kill/tkill/tgkill/pidfd_*), ptrace and cross-process memory access, namespaces and mounts,
// keyrings, BPF, perf, userfaultfd, io_uring and module/kexec calls; clone3 returns ENOSYS so
// libc falls back to the filtered clone. Foreign architectures (x32/i386 entry points) kill the
// process. The rlimits bound address space (memory), CPU seconds, file size (the scratch dir),
// open files and core dumps; the process cannot raise them back.
//
// Contract: `apply` runs in the call process only; it returns false if anything failed, and the
// caller must then exit without running the handler.
#pragma once

#include <linux/filter.h>

#include <cstddef>
#include <vector>

namespace tessera::sandbox_worker {

struct call_rlimits {
  size_t address_space_bytes = 0;  // 0: no limit
  unsigned cpu_seconds = 0;        // 0: no limit
  size_t file_size_bytes = 16 << 20;
  unsigned open_files = 64;
};

class confinement {
 public:
  explicit confinement(bool allow_network);

  bool ready() const { return !program_.empty(); }

  bool apply(const call_rlimits& limits) const;

 private:
  std::vector<sock_filter> program_;  // the filter compiled to BPF
};

// Address space the process maps now (VmSize), in bytes.
size_t mapped_bytes();

// Asks the kernel to back the process's anonymous writable memory (the warm interpreter's
// heap) with transparent huge pages: fork then copies a few page-middle-directory entries
// instead of thousands of page-table entries. Best effort; returns the bytes collapsed.
size_t collapse_to_huge_pages();

}  // namespace tessera::sandbox_worker
