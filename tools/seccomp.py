"""A seccomp filter for the sandbox, assembled here as classic BPF (no libseccomp needed).

bubblewrap installs it (`--seccomp FD`) just before it runs the sandboxed program, so the
set-up itself is unaffected. The filter refuses, with EPERM, the calls that widen what a process
can reach or see: new namespaces (unshare, setns, clone with a namespace flag), mounts and the
new mount API, bpf, keyrings, ptrace and reading other processes' memory, perf events, kernel
modules, kexec, io_uring (whose operations would bypass this filter), userfaultfd, file-handle
opens, and faking terminal input (ioctl TIOCSTI). clone3 answers ENOSYS: its flags live in
memory a filter cannot read, and the C library then falls back to clone, which is checked.
Anything from another ABI (i386 through int 0x80, x32) is refused outright.

Only x86-64 syscall numbers are written down (the ones this was tested on); on any other
architecture `build_filter()` returns None and the sandbox reports that no seccomp layer applies.
"""

from __future__ import annotations

import errno
import platform
import struct

# BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000

# offsets in struct seccomp_data
_NR, _ARCH, _ARG0_LO, _ARG1_LO = 0, 4, 16, 24

_CLONE_NS_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)
_TIOCSTI = 0x5412

X86_64_DENIED = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "vhangup": 153, "pivot_root": 155,
    "adjtimex": 159, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212,
    "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "unshare": 272, "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
    "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442,
}
_X86_64_CLONE, _X86_64_CLONE3, _X86_64_IOCTL = 56, 435, 16


def _assemble(prog: list[tuple]) -> bytes:
    """(opcode, k, jt, jf) rows, where jt/jf are label names or 0; a str row is a label."""
    labels: dict[str, int] = {}
    rows = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(rows)
        else:
            rows.append(item)
    out = []
    for pc, (code, k, jt, jf) in enumerate(rows):
        offsets = []
        for target in (jt, jf):
            off = 0 if target == 0 else labels[target] - pc - 1
            if not 0 <= off <= 255:
                raise ValueError(f"BPF jump out of range at {pc}")
            offsets.append(off)
        out.append(struct.pack("<HBBI", code, offsets[0], offsets[1], k))
    return b"".join(out)


def build_filter(machine: str | None = None) -> bytes | None:
    """The compiled filter for this machine's architecture, or None where it has none."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return None
    deny = _RET_ERRNO | errno.EPERM
    prog: list = [
        (_LD_W_ABS, _ARCH, 0, 0),
        (_JEQ, _AUDIT_ARCH_X86_64, "native", 0),
        (_RET, deny, 0, 0),
        "native",
        (_LD_W_ABS, _NR, 0, 0),
        (_JGE, _X32_BIT, "deny", 0),  # x32 numbers have bit 30 set
    ]
    prog += [(_JEQ, nr, "deny", 0) for nr in sorted(X86_64_DENIED.values())]
    prog += [
        (_JEQ, _X86_64_CLONE3, "enosys", 0),
        (_JEQ, _X86_64_CLONE, "clone", 0),
        (_JEQ, _X86_64_IOCTL, "ioctl", 0),
        (_RET, _RET_ALLOW, 0, 0),
        "deny",
        (_RET, deny, 0, 0),
        "enosys",
        (_RET, _RET_ERRNO | errno.ENOSYS, 0, 0),
        "clone",
        (_LD_W_ABS, _ARG0_LO, 0, 0),
        (_JSET, _CLONE_NS_FLAGS, "clone_deny", 0),
        (_RET, _RET_ALLOW, 0, 0),
        "clone_deny",
        (_RET, deny, 0, 0),
        "ioctl",
        (_LD_W_ABS, _ARG1_LO, 0, 0),
        (_JEQ, _TIOCSTI, "ioctl_deny", 0),
        (_RET, _RET_ALLOW, 0, 0),
        "ioctl_deny",
        (_RET, deny, 0, 0),
    ]
    return _assemble(prog)
