#include "adapters/sandbox/worker/confinement.hpp"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <initializer_list>
#include <string_view>

namespace tessera::sandbox_worker {
namespace {

constexpr int denied_always[] = {SCMP_SYS(fork),
                                 SCMP_SYS(vfork),
                                 SCMP_SYS(clone),
                                 SCMP_SYS(execve),
                                 SCMP_SYS(execveat),
                                 SCMP_SYS(kill),
                                 SCMP_SYS(tkill),
                                 SCMP_SYS(tgkill),
                                 SCMP_SYS(rt_sigqueueinfo),
                                 SCMP_SYS(rt_tgsigqueueinfo),
                                 SCMP_SYS(pidfd_open),
                                 SCMP_SYS(pidfd_send_signal),
                                 SCMP_SYS(pidfd_getfd),
                                 SCMP_SYS(ptrace),
                                 SCMP_SYS(process_vm_readv),
                                 SCMP_SYS(process_vm_writev),
                                 SCMP_SYS(process_madvise),
                                 SCMP_SYS(kcmp),
                                 SCMP_SYS(unshare),
                                 SCMP_SYS(setns),
                                 SCMP_SYS(mount),
                                 SCMP_SYS(umount2),
                                 SCMP_SYS(pivot_root),
                                 SCMP_SYS(chroot),
                                 SCMP_SYS(move_mount),
                                 SCMP_SYS(open_tree),
                                 SCMP_SYS(fsopen),
                                 SCMP_SYS(fsmount),
                                 SCMP_SYS(fspick),
                                 SCMP_SYS(mount_setattr),
                                 SCMP_SYS(keyctl),
                                 SCMP_SYS(add_key),
                                 SCMP_SYS(request_key),
                                 SCMP_SYS(bpf),
                                 SCMP_SYS(perf_event_open),
                                 SCMP_SYS(userfaultfd),
                                 SCMP_SYS(io_uring_setup),
                                 SCMP_SYS(io_uring_enter),
                                 SCMP_SYS(io_uring_register),
                                 SCMP_SYS(personality),
                                 SCMP_SYS(init_module),
                                 SCMP_SYS(finit_module),
                                 SCMP_SYS(delete_module),
                                 SCMP_SYS(kexec_load),
                                 SCMP_SYS(kexec_file_load),
                                 SCMP_SYS(reboot),
                                 SCMP_SYS(swapon),
                                 SCMP_SYS(swapoff),
                                 SCMP_SYS(acct),
                                 SCMP_SYS(syslog),
                                 SCMP_SYS(quotactl),
                                 SCMP_SYS(name_to_handle_at),
                                 SCMP_SYS(open_by_handle_at),
                                 SCMP_SYS(set_mempolicy),
                                 SCMP_SYS(mbind),
                                 SCMP_SYS(migrate_pages),
                                 SCMP_SYS(move_pages),
                                 SCMP_SYS(setrlimit),
                                 SCMP_SYS(prlimit64),
                                 SCMP_SYS(setpriority),
                                 SCMP_SYS(sched_setaffinity),
                                 SCMP_SYS(sched_setscheduler),
                                 SCMP_SYS(ioprio_set),
                                 SCMP_SYS(mknod),
                                 SCMP_SYS(mknodat)};

constexpr int denied_network[] = {SCMP_SYS(socket),  SCMP_SYS(socketpair), SCMP_SYS(connect),
                                  SCMP_SYS(bind),    SCMP_SYS(listen),     SCMP_SYS(accept),
                                  SCMP_SYS(accept4), SCMP_SYS(sendto),     SCMP_SYS(sendmsg),
                                  SCMP_SYS(sendmmsg)};

bool set_limit(int resource, rlim_t value) {
  rlimit l{value, value};
  return ::setrlimit(resource, &l) == 0;
}

}  // namespace

confinement::confinement(bool allow_network) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return;
  // KILL_PROCESS needs the kernel to say it supports it (gVisor does not): fall back to KILL.
  bool ok = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) == 0 ||
            seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL) == 0;
  for (int nr : denied_always) ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) == 0;
  ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) == 0;
  if (!allow_network)
    for (int nr : denied_network)
      ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) == 0;
  // Compile the filter to BPF once: loading it per call is then one prctl, with no allocation
  // in the call process.
  int fd = ok ? ::memfd_create("seccomp-bpf", MFD_CLOEXEC) : -1;
  if (fd >= 0 && seccomp_export_bpf(ctx, fd) == 0) {
    off_t size = ::lseek(fd, 0, SEEK_END);
    program_.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    ok = size > 0 && ::pread(fd, program_.data(), static_cast<size_t>(size), 0) == size;
  } else {
    ok = false;
  }
  if (fd >= 0) ::close(fd);
  seccomp_release(ctx);
  if (!ok) program_.clear();
}

bool confinement::apply(const call_rlimits& limits) const {
  if (program_.empty()) return false;
  bool ok = set_limit(RLIMIT_CORE, 0) && set_limit(RLIMIT_NOFILE, limits.open_files) &&
            set_limit(RLIMIT_FSIZE, limits.file_size_bytes);
  if (limits.address_space_bytes) ok = ok && set_limit(RLIMIT_AS, limits.address_space_bytes);
  if (limits.cpu_seconds) {
    rlimit cpu{limits.cpu_seconds, limits.cpu_seconds + 1};  // SIGXCPU, then SIGKILL
    ok = ok && ::setrlimit(RLIMIT_CPU, &cpu) == 0;
  }
  sock_fprog prog{static_cast<unsigned short>(program_.size()),
                  const_cast<sock_filter*>(program_.data())};
  return ok && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

size_t collapse_to_huge_pages() {
#ifndef MADV_COLLAPSE
  constexpr int MADV_COLLAPSE = 25;  // Linux 6.1; glibc 2.36 headers predate it
#endif
  constexpr uintptr_t huge = 2 << 20;
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (!f) return 0;
  size_t collapsed = 0;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    uintptr_t from = 0, to = 0;
    char perms[8] = {};
    unsigned long offset = 0, inode = 0;
    char dev[16] = {}, path[256] = {};
    int n = std::sscanf(line, "%lx-%lx %7s %lx %15s %lu %255s", &from, &to, perms, &offset, dev,
                        &inode, path);
    bool anonymous = n == 6 || (n == 7 && std::string_view{path} == "[heap]");
    if (n < 6 || !anonymous || perms[0] != 'r' || perms[1] != 'w') continue;
    uintptr_t start = (from + huge - 1) & ~(huge - 1), end = to & ~(huge - 1);
    if (end <= start) continue;
    auto* addr = reinterpret_cast<void*>(start);
    ::madvise(addr, end - start, MADV_HUGEPAGE);
    if (::madvise(addr, end - start, MADV_COLLAPSE) == 0) collapsed += end - start;
  }
  std::fclose(f);
  return collapsed;
}

size_t mapped_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long pages = 0;
  int n = std::fscanf(f, "%lu", &pages);
  std::fclose(f);
  return n == 1 ? pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace tessera::sandbox_worker
