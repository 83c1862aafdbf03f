#!/usr/bin/env python3
"""Lines up the latency bench's samples (--samples-out) with an ftrace of knockerd taken on the
same clock (scripts/trace-latency.sh) and says which stage each sample's time went to.

`trace-latency.py --fsync DIR [N]`: the floor under the ledger's sync on the disk that holds DIR,
N times each (default 1000), interleaved, 2 ms apart: a 330-byte record (three ledger lines)
appended and fdatasync'd, as the ledger does; written over a region zero-filled and synced
beforehand, then fdatasync'd (no size change, so no journal commit); over a preallocated
(fallocate, unwritten) region; and written with O_DSYNC over a zero-filled region."""
import bisect
import collections
import re
import sys

LINE = re.compile(r'^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (.*)$')
CALL = re.compile(r'(sys_\w+)(\((.*)\)| -> (\S+))')
STAGES = [
    ('to_worker', 'last packet sent -> the worker\'s poll returns (kernel, NFLOG, wakeup)'),
    ('worker_runq', '  of which the worker waited, woken, for a CPU'),
    ('worker', 'the worker: read, engine, report written to the pipe'),
    ('to_parent', 'report written -> the parent\'s poll returns'),
    ('parent_runq', '  of which the parent waited, woken, for a CPU'),
    ('before_sync', 'the parent: read, check, gatekeeper, until fdatasync'),
    ('fdatasync', 'the ledger\'s fdatasync'),
    ('fdatasync_runq', '  of which the parent waited, woken by its I/O, for a CPU'),
    ('to_netlink', 'fdatasync returned -> nftables batch sent'),
    ('netlink', 'batch sent -> the bench stamps the notification'),
]


def main(d):
    events = collections.defaultdict(list)
    wake = collections.defaultdict(list)
    run = collections.defaultdict(list)
    comm = {}
    with open(d + '/trace.txt') as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            c, pid, t, rest = m.group(1), int(m.group(2)), float(m.group(4)), m.group(5)
            comm[pid] = c
            if rest.startswith('sched_wakeup:'):
                wake[int(re.search(r' pid=(\d+)', rest).group(1))].append(t)
            elif rest.startswith('sched_switch:'):
                run[int(re.search(r'next_pid=(\d+)', rest).group(1))].append(t)
            else:
                m2 = CALL.match(rest)
                if not m2:
                    continue
                if m2.group(3) is not None:
                    fd = re.match(r'fd: (\w+)', m2.group(3))
                    events[(pid, m2.group(1) + '(' + (str(int(fd.group(1), 16)) if fd else ''))].append(t)
                    events[(pid, m2.group(1) + '(')].append(t)
                else:
                    events[(pid, m2.group(1) + '->')].append(t)
    for v in list(events.values()) + list(wake.values()) + list(run.values()):
        v.sort()
    parents = [p for (p, k) in events if k == 'sys_fdatasync(']
    workers = [p for (p, k) in events if k == 'sys_write(1' and comm.get(p) == 'knockerd' and p not in parents]
    if len(set(parents)) != 1 or len(set(workers)) != 1:
        sys.exit(f'expected one knockerd parent and one worker, found {set(parents)} and {set(workers)}')
    P, W = parents[0], workers[0]

    def after(v, t):
        if t is None:
            return None
        i = bisect.bisect_left(v, t)
        return v[i] if i < len(v) else None

    def runq(pid, a, b):
        # woken -> running, for each wakeup of `pid` inside [a, b]
        total, i = 0.0, bisect.bisect_left(wake[pid], a)
        while i < len(wake[pid]) and wake[pid][i] < b:
            r = after(run[pid], wake[pid][i])
            if r is not None:
                total += min(r, b) - wake[pid][i]
            i += 1
        return total

    rows, unmatched = [], 0
    with open(d + '/samples.csv') as f:
        next(f)
        for line in f:
            tag, _, sent, lat = line.strip().split(',')
            if not lat:
                continue
            s, lat = int(sent) / 1e9, int(lat) / 1e9
            e = s + lat
            wpoll = after(events[(W, 'sys_poll->')], s)
            wwake = after(wake[W], s)
            wrun = after(run[W], wwake)
            wwrite = after(events[(W, 'sys_write(1')], s)
            pwake = after(wake[P], wwrite)
            prun = after(run[P], pwake)
            ppoll = after(events[(P, 'sys_poll->')], wwrite)
            fs0 = after(events[(P, 'sys_fdatasync(')], wwrite)
            fs1 = after(events[(P, 'sys_fdatasync->')], fs0)
            snd = after(events[(P, 'sys_sendto(')], fs1)
            t = [wpoll, wwake, wrun, wwrite, pwake, prun, ppoll, fs0, fs1, snd]
            if None in t or not (s <= wpoll <= wwrite <= ppoll <= fs0 <= fs1 <= snd <= e + 1e-3):
                unmatched += 1
                continue
            ms = 1e3
            rows.append(dict(tag=tag, total=lat * ms, to_worker=(wpoll - s) * ms,
                             worker_runq=max(0.0, min(wrun, wpoll) - wwake) * ms if wwake <= wpoll else 0.0,
                             worker=(wwrite - wpoll) * ms, to_parent=(ppoll - wwrite) * ms,
                             parent_runq=max(0.0, min(prun, ppoll) - pwake) * ms if pwake <= ppoll else 0.0,
                             before_sync=(fs0 - ppoll) * ms, fdatasync=(fs1 - fs0) * ms,
                             fdatasync_runq=runq(P, fs0, fs1) * ms,
                             to_netlink=(snd - fs1) * ms, netlink=max(0.0, e - snd) * ms))
    if not rows:
        sys.exit('no sample lined up with the trace')

    def q(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, max(0, int(-(-p * len(v) // 1)) - 1))]

    slow = [r for r in rows if r['total'] > 2.0]
    print(f'\n{len(rows)} samples lined up with the trace ({unmatched} not); {len(slow)} took over 2 ms.\n')
    print('| stage | median | p99 | max | share of the slow samples\' time |')
    print('|---|---|---|---|---|')
    slow_total = sum(r['total'] for r in slow) or 1.0
    for key, what in [('total', 'whole sample')] + STAGES:
        v = [r[key] for r in rows]
        share = sum(r[key] for r in slow) / slow_total * 100
        print(f'| {what} | {q(v, .5):.3f} ms | {q(v, .99):.3f} ms | {max(v):.3f} ms | {share:.0f}% |')
    blame = collections.Counter(
        max((k for k, _ in STAGES if not k.endswith('runq')), key=lambda k: r[k]) for r in slow)
    print('\nThe largest stage of each slow sample: ' +
          ', '.join(f'{k} {n}' for k, n in blame.most_common()))
    print('\nThe 10 slowest (ms):')
    for r in sorted(slow, key=lambda r: -r['total'])[:10]:
        print('  ' + r['tag'] + ' ' + ' '.join(f"{k}={r[k]:.2f}" for k in ['total'] + [k for k, _ in STAGES]))


def fsync_floor(d, n):
    import os
    import time
    rec = b'{"seq":1,"t":1,"kind":"grant","door":"sequence","addr":"10.200.1.10","services":["tcp/2222"],"until_unix":1}\n' * 3
    files = {}
    try:
        for name in ['append', 'over zero-filled', 'over fallocated', 'O_DSYNC over zero-filled']:
            path = os.path.join(d, 'knocker-fsync-' + name.replace(' ', '-'))
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | (os.O_DSYNC if name.startswith('O_DSYNC') else 0)
            fd = os.open(path, flags, 0o600)
            if 'zero-filled' in name:
                os.write(fd, b'\0' * (len(rec) * n + 4096))
                os.fsync(fd)
            elif 'fallocated' in name:
                os.posix_fallocate(fd, 0, len(rec) * n + 4096)
                os.fsync(fd)
            files[name] = (path, fd, [])
        for i in range(n):
            for name, (_, fd, times) in files.items():
                t = time.perf_counter()
                if name == 'append':
                    os.write(fd, rec)
                else:
                    os.pwrite(fd, rec, i * len(rec))
                if not name.startswith('O_DSYNC'):
                    os.fdatasync(fd)
                times.append((time.perf_counter() - t) * 1e3)
                time.sleep(0.002)
    finally:
        for path, fd, _ in files.values():
            os.close(fd)
            os.unlink(path)

    def q(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, max(0, int(-(-p * len(v) // 1)) - 1))]

    print(f'| write + sync of 330 bytes, {n} each, interleaved | min | median | p99 | max | over 2 ms |')
    print('|---|---|---|---|---|---|')
    for name, (_, _, v) in files.items():
        print(f'| {name} | {min(v):.3f} ms | {q(v, .5):.3f} ms | {q(v, .99):.3f} ms | {max(v):.3f} ms | {sum(x > 2 for x in v)} |')


if __name__ == '__main__':
    if sys.argv[1] == '--fsync':
        fsync_floor(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000)
    else:
        main(sys.argv[1])
