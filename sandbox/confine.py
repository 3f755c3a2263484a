"""Confining a freshly forked worker process: the OS layer under the RestrictedPython policy.

Applied in order, each layer standing on its own if the policy above it is escaped:
1. only the channel stays open: every inherited descriptor is closed, 0-2 point at /dev/null;
2. resource limits: CPU seconds, address space, no file writes, no new descriptors, no new
   processes, no core dumps;
3. when running as root, the worker drops to an unprivileged uid/gid with no groups, so even a
   way around the filter below meets ordinary file permissions;
4. a seccomp filter (libseccomp) refuses with EPERM every system call that opens, creates or
   probes files, executes, forks or clones, makes sockets, signals or traces other processes,
   or changes the system; system calls of foreign architectures kill the process.

What this does not do: hide the file system namespace (stat still works on paths), isolate
the network namespace, or cap memory bandwidth. Running the worker under nsjail or bubblewrap
(new mount, pid, net and user namespaces, cgroup memory and pid limits) would add those; see
the README's "Sandbox" section.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal

import pyseccomp

from sandbox.limits import REUSE_CPU_SECONDS, WorkerLimits

CHANNEL_FD = 3
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4

# Refused with EPERM. The default is to allow: the interpreter needs memory, time, signals of
# its own and I/O on the descriptors it already holds, and nothing else is reachable.
REFUSED_SYSCALLS = (
    # files: opening, creating, probing and changing
    "open", "openat", "openat2", "creat", "open_by_handle_at", "name_to_handle_at",
    "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64",
    "chdir", "fchdir", "chroot", "mknod", "mknodat", "link", "linkat", "symlink", "symlinkat",
    "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
    "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "truncate",
    "utime", "utimes", "utimensat", "futimesat", "inotify_init", "inotify_init1",
    "fanotify_init", "memfd_create", "memfd_secret", "io_uring_setup", "io_uring_enter",
    "io_uring_register",
    # processes: executing, forking, signalling and tracing others
    "execve", "execveat", "fork", "vfork", "clone", "clone3", "kill", "tkill", "tgkill",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "prctl", "seccomp",
    # network: no new sockets of any family
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # identity and system state
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "mount", "umount2", "pivot_root", "unshare", "setns",
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "personality", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "sethostname", "setdomainname", "iopl", "ioperm",
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "syslog", "vhangup",
)  # fmt: skip


def confine(channel_fd: int, limits: WorkerLimits) -> None:
    """Confine this (just forked) process; `channel_fd` becomes descriptor 3 and stays open."""
    _die_with_parent()
    _keep_only_channel(channel_fd)
    _set_resource_limits(limits)
    _drop_privileges(limits)
    _install_seccomp_filter()


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace by same-uid processes, no core


def _keep_only_channel(channel_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if channel_fd != CHANNEL_FD:
        os.dup2(channel_fd, CHANNEL_FD)
    os.closerange(CHANNEL_FD + 1, _max_fd())


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 65536


def _set_resource_limits(limits: WorkerLimits) -> None:
    cpu = limits.cpu_seconds + REUSE_CPU_SECONDS  # a reused worker has used less than the extra
    for which, soft, hard in (
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, 0, 0),
        (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        (resource.RLIMIT_NPROC, 0, 0),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(which, (soft, hard))


def _drop_privileges(limits: WorkerLimits) -> None:
    if os.getuid() != 0:
        return  # already unprivileged
    os.setgroups([])
    os.setgid(limits.unprivileged_gid)
    os.setuid(limits.unprivileged_uid)


def _install_seccomp_filter() -> None:
    refuse = pyseccomp.ERRNO(errno.EPERM)
    fil = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)  # sets no_new_privs before loading
    for name in REFUSED_SYSCALLS:
        try:
            fil.add_rule(refuse, name)
        except (ValueError, OSError):  # a name this kernel/architecture does not have
            continue
    fil.load()
