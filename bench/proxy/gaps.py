#!/usr/bin/env python3
"""Where a proxy's time goes between its system calls, from a syscall trace.

Reads `perf script --ns -F tid,time,event,trace` output of the raw_syscalls:sys_enter and
sys_exit tracepoints (see gaps.sh) and prints, per kind of step, the median time:

- between two system calls (the user-space work of the step, plus any time the thread
  was preempted in it), keyed by the call before and the call after, e.g.
  `recvfrom(13) -> sendto(14)`: reading a client's request to writing it upstream;
- inside each system call.

File descriptors tell the client's connection from the upstream's.
"""

import collections
import re
import statistics
import sys

NAMES = {
    0: "read", 1: "write", 3: "close", 19: "readv", 20: "writev", 44: "sendto",
    45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 55: "getsockopt", 202: "futex",
    232: "epoll_wait", 233: "epoll_ctl", 281: "epoll_pwait", 441: "epoll_pwait2",
}
# Calls on a socket: their first argument (the file descriptor) is shown.
ON_FD = {0, 1, 3, 19, 20, 44, 45, 46, 47, 55}
LINE = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)\s*(.*)$")
ROWS = 12


def steps(lines):
    """(gaps, inside): lists of durations in seconds, keyed by step."""
    gaps, inside = collections.defaultdict(list), collections.defaultdict(list)
    entered, last_exit = {}, {}
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        tid, at, kind, nr, rest = int(m[1]), float(m[2]), m[3], int(m[4]), m[5]
        name = NAMES.get(nr, f"syscall {nr}")
        if kind == "enter":
            fd = re.search(r"\(([0-9a-fx]+)", rest)
            label = f"{name}({int(fd[1], 16)})" if nr in ON_FD and fd else name
            if tid in last_exit:
                before, since = last_exit[tid]
                gaps[f"{before} -> {label}"].append(at - since)
            entered[tid] = (label, at)
        elif tid in entered:
            label, since = entered.pop(tid)
            inside[label].append(at - since)
            last_exit[tid] = (label, at)
    return gaps, inside


def table(title, rows):
    print(title)
    busiest = sorted(rows.items(), key=lambda kv: -len(kv[1]))[:ROWS]
    for key, values in busiest:
        print(f"  {key:44s} n={len(values):7d}  median {statistics.median(values) * 1e6:6.2f} us")


def main():
    gaps, inside = steps(sys.stdin)
    if not gaps:
        sys.exit("no system calls in the trace")
    table("between system calls (user space, or preempted)", gaps)
    table("inside system calls", inside)


if __name__ == "__main__":
    main()
