#!/usr/bin/env python3
"""CPU cost per request of one workload on a fresh 3-member mutual-TLS cluster.

    scripts/cpu-per-op.py rampart --clients=256 put        # or: etcd --clients=64 range --consistency=l
    RAMPART=target/release/rampart scripts/cpu-per-op.py rampart put

Starts the cluster the way scripts/bench-vs-etcd.sh does, runs one `rampart bench --duration=10s`
with the given arguments, and prints the bench's JSON line plus the CPU seconds the three members
and the bench client used, per request (the members' also by thread name, with the threads'
context switches). Throughput moves with whatever else the machine does; CPU per request moves
much less, so it is the figure to compare when changing the write path. With `--rate` the load is
fixed and CPU per request moves least of all (within about 3% between runs here).
Environment: RAMPART (default target/release/rampart), ETCD (default /usr/bin/etcd), KEY_SPACE (keys the
puts spread over, default 100,000; a small one rewrites the same keys often); ETCD_* variables
reach the members (e.g. ETCD_SNAPSHOT_COUNT=5000).
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_etcd as bench  # noqa: E402


def stat_fields(pid):
    """/proc/<pid>/stat after the command name (which may hold spaces): field 3 (state) first."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid):
    """Page faults that needed no disk (fresh memory being touched, e.g. after the allocator gave
    pages back to the kernel)."""
    return int(stat_fields(pid)[7])


def thread_cpu(pids):
    """CPU seconds by thread name (tokio-rt-worker, apply, raft, ...) summed over the members.
    A thread that exited during the run is missed; the members' threads live as long as they do."""
    by_name = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                by_name[name] = by_name.get(name, 0.0) + cpu_seconds(f"{pid}/task/{task.name}")
            except OSError:
                continue
    return by_name


def thread_switches(pids):
    """Context switches (voluntary + involuntary) by thread name, summed over the members. On
    this machine's VM a switch to a thread on the other CPU costs about 16 us of CPU
    (`perf bench sched pipe`: 40 us per round trip), so these counts explain much of the CPU."""
    by_name = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                status = (task / "status").read_text()
            except OSError:
                continue
            switches = sum(int(line.split()[1]) for line in status.splitlines()
                           if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
            by_name[name] = by_name.get(name, 0) + switches
    return by_name


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("rampart", "etcd"):
        sys.exit(__doc__)
    system, workload = sys.argv[1], sys.argv[2:]
    rampart = str(Path(os.environ.get("RAMPART", "target/release/rampart")).resolve())
    server = rampart if system == "rampart" else os.environ.get("ETCD", "/usr/bin/etcd")
    work = Path(tempfile.mkdtemp(prefix="cpu-per-op-"))
    cluster = None
    try:
        pki = bench.Pki(rampart, work / "tls")
        (work / "cluster").mkdir()
        cluster = bench.Cluster(system, server, pki, work / "cluster")
        cluster.start("/usr/bin/etcdctl")
        bench.run(["/usr/bin/etcdctl", f"--endpoints={cluster.endpoints()}", *pki.client_flags(), "put",
                   "bench-key", "v" * bench.VALUE_SIZE], 30)
        members_before = [cpu_seconds(p.pid) for p in cluster.procs]
        faults_before = sum(minor_faults(p.pid) for p in cluster.procs)
        threads_before = thread_cpu([p.pid for p in cluster.procs])
        switches_before = thread_switches([p.pid for p in cluster.procs])
        client_before = children_cpu()
        defaults = {"--conns": "16", "--key-size": bench.KEY_SIZE, "--val-size": bench.VALUE_SIZE,
                    "--key-space-size": os.environ.get("KEY_SPACE", bench.KEY_SPACE)}
        # A flag given in the workload replaces the default (`--conns=500 --val-size=1024 put`).
        given = {arg.split("=", 1)[0] for arg in workload}
        cmd = [rampart, "bench", f"--endpoints={cluster.endpoints()}", *pki.client_flags(),
               *(f"{flag}={value}" for flag, value in defaults.items() if flag not in given),
               "--json", "--duration=10s", *workload]
        out = bench.run(cmd, 120)
        members = sum(cpu_seconds(p.pid) for p in cluster.procs) - sum(members_before)
        faults = sum(minor_faults(p.pid) for p in cluster.procs) - faults_before
        threads = thread_cpu([p.pid for p in cluster.procs])
        switches = thread_switches([p.pid for p in cluster.procs])
        client = children_cpu() - client_before
        report = json.loads(out.stdout.strip().splitlines()[-1])
        ops = max(report["ops"], 1)
        print(json.dumps(report))
        print(f"{system}: {report['ops_per_sec']:.0f} ops/s; CPU per request: members "
              f"{members / ops * 1e6:.1f} us, bench client {client / ops * 1e6:.1f} us; "
              f"members' page faults per request {faults / ops:.3f}")
        per_thread = {name: (cpu - threads_before.get(name, 0.0)) / ops * 1e6 for name, cpu in threads.items()}
        busiest = sorted(per_thread.items(), key=lambda kv: -kv[1])[:5]
        print("  members' CPU per request by thread: "
              + ", ".join(f"{name} {us:.1f} us" for name, us in busiest if us >= 0.05))
        per_thread_switches = {name: (n - switches_before.get(name, 0)) / ops for name, n in switches.items()}
        print("  members' context switches per request by thread: "
              + ", ".join(f"{name} {per_thread_switches.get(name, 0):.2f}" for name, _ in busiest if _ >= 0.05))
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
