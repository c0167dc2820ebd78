#!/usr/bin/env python3
"""Start, memory and idle CPU of `tokend serve` (issue #15), measured on the
real binary from outside, as systemd would see it.

Each round:
  start    a vault of 100,000 identities (refresh token and a 900-byte access
           token each); `tokend serve` with NOTIFY_SOCKET on a datagram
           socket this script reads: wall time from exec to READY=1, and
           VmRSS/VmHWM (/proc/PID/status) at READY=1 and 5 s later.
  idle     a vault of 1,000 identities with tokens valid for a day: CPU ticks
           (utime+stime, /proc/PID/stat) and CPU time (the threads'
           schedstat, in ns) over 20 s with no client; then RSS
           growth per idle connection (each has sent one PING and read its
           reply) with 1,000 and 10,000 connections open. Before those,
           the same CPU figures with one client left connected after
           1,000 GETs one after another (the socket's busy poll ends).
  watch    the same vault, a fresh agent: RSS growth per connection with
           1,000 connections each in WATCH (one identity each, first line
           read), then CPU ticks and time over 20 s with those watchers open.

Every figure goes to the raw file as one `round=N key=value` line, with the
machine; a Markdown table (median and spread over the rounds) is printed and
appended to that file.

    Benchmarks/agent/run.py --tokend BIN [--rounds 3] [--identities 100000]
                            [--idle-seconds 20] [--out FILE]
    Benchmarks/agent/run.py --table Benchmarks/results/agent-<time>.txt
"""
import argparse
import base64
import datetime
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LIVE_AGENTS = []  # killed on any way out, so no agent outlives the script


def fail(message):
    print(f"agent bench: {message}", file=sys.stderr)
    sys.exit(1)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    fail(f"no {field} in /proc/{pid}/status")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15.
    return int(fields[11]) + int(fields[12])


def thread_cpu_ns(pid):
    """Each thread's CPU time in nanoseconds (the first field of its
    schedstat). Ticks alone cannot tell a few microseconds of work from
    none: a delta of one 10 ms tick is a boundary crossed, whatever was
    spent crossing it."""
    times = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as file:
                times[task] = int(file.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            if os.path.isdir(f"/proc/{pid}/task/{task}"):
                fail("this kernel has no /proc/PID/task/TID/schedstat (CONFIG_SCHED_INFO); CPU time cannot be measured")
            # else: the thread ended while listed
    if not times or sum(times.values()) == 0:
        fail("schedstat reports no CPU time for a running agent (sched_info off?); CPU time cannot be measured")
    return times


def measure_idle_cpu(agent, emit, key, seconds):
    """Emits `idle_cpu_ticks_<key>` and `idle_cpu_ms_<key>` over `seconds`.
    The time is summed over the threads alive at the end (a thread that
    ended in between, such as an idle worker of the concurrency pool, takes
    its time with it; `idle_cpu_threads_ended_<key>` counts them)."""
    ticks, before = cpu_ticks(agent.pid), thread_cpu_ns(agent.pid)
    time.sleep(seconds)
    after = thread_cpu_ns(agent.pid)
    emit(f"idle_cpu_ticks_{key}", str(cpu_ticks(agent.pid) - ticks))
    spent = sum(value - before.get(task, 0) for task, value in after.items())
    emit(f"idle_cpu_ms_{key}", f"{spent / 1e6:.3f}")
    emit(f"idle_cpu_threads_ended_{key}", str(len(set(before) - set(after))))


def write_config(directory, max_connections):
    with open(os.path.join(directory, "secret"), "w") as file:
        file.write("unused")
    path = os.path.join(directory, "tokend.toml")
    with open(path, "w") as file:
        file.write(f"""[vault]
path = "{directory}/vault.db"
key_file = "{directory}/vault.key"
[socket]
path = "{directory}/tokend.sock"
max_connections = {max_connections}
max_connections_per_uid = {max_connections}
idle_timeout = 3600
[providers.none]
kind = "oauth2"
token_endpoint = "http://127.0.0.1:9/token"
client_id = "bench"
client_secret_file = "{directory}/secret"
allow_insecure_http = true
""")
    return path


def make_vault(tokend, directory, count, prefix, max_connections):
    """A vault of `count` identities whose tokens stay valid for a day (no
    refresh, no provider call while measuring), through `tokend vault import`."""
    os.makedirs(directory, mode=0o700)
    config = write_config(directory, max_connections)
    result = subprocess.run([tokend, "vault", "init", "--config", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    if result.returncode != 0:
        fail(f"vault init failed: {result.stderr.decode(errors='replace')[:500]}")
    lines = []
    for index in range(count):
        token = base64.b64encode(os.urandom(675)).decode()  # 900 bytes
        lines.append(f'{{"name":"{prefix}{index:06d}","provider":"none","refresh_token":"rt-{index}",'
                     f'"access_token":"{token}","expires_in":86400}}\n')
    started = time.monotonic()
    result = subprocess.run([tokend, "vault", "import", "--config", config], input="".join(lines).encode(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        fail(f"vault import of {count} identities failed: {result.stderr.decode(errors='replace')[:500]}")
    return config, time.monotonic() - started


class Agent:
    """`tokend serve` under a NOTIFY_SOCKET this object listens on."""

    def __init__(self, tokend, config, directory, notify=True):
        self.directory = directory
        self.notify_path = os.path.join(directory, "notify.sock")
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.log = open(os.path.join(directory, "agent.log"), "ab")
        environment = dict(os.environ)
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            environment.pop(name, None)
        if notify:
            environment["NOTIFY_SOCKET"] = self.notify_path
        self.started = time.monotonic()
        self.process = subprocess.Popen([tokend, "serve", "--config", config, "--log-level", "warning"],
                                        env=environment, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.pid = self.process.pid
        LIVE_AGENTS.append(self.process)
        self.socket_path = os.path.join(directory, "tokend.sock")

    def wait_ready(self, timeout=120):
        """Seconds from exec to the READY=1 datagram."""
        deadline = self.started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                fail(f"no READY=1 within {timeout} s")
            self.notify.settimeout(min(remaining, 1.0))
            try:
                message = self.notify.recv(4096)
            except socket.timeout:
                if self.process.poll() is not None:
                    fail(f"tokend exited with {self.process.returncode} before READY=1 (log: {self.log.name})")
                continue
            if b"READY=1" in message.split(b"\n"):
                return time.monotonic() - self.started

    def wait_answering(self, timeout=120):
        """Without NOTIFY_SOCKET: waits until the socket answers PING."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                fail(f"tokend exited with {self.process.returncode} (log: {self.log.name})")
            try:
                if self.request("PING").startswith("OK PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        fail(f"tokend did not answer PING within {timeout} s")

    def request(self, line):
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(30)
            connection.connect(self.socket_path)
            connection.sendall(line.encode() + b"\n")
            return read_line(connection)

    def connections(self):
        reply = self.request("STATS")
        for field in reply.split():
            if field.startswith("connections="):
                return int(field.split("=", 1)[1])
        fail(f"STATS without connections=: {reply[:200]!r}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                fail("tokend did not stop within 60 s of SIGTERM")
        self.notify.close()
        self.log.close()
        if self.process.returncode != 0:
            fail(f"tokend exited with {self.process.returncode} (log: {self.log.name})")


def read_line(connection):
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            fail(f"tokend closed a connection before a full reply ({len(data)} bytes)")
        data += chunk
        if data.count(b"\n") > 1:
            fail("tokend sent more than one line where one was expected")
    return data.decode(errors="replace")


def open_connections(agent, count, request, expect):
    """`count` connections, each sends `request` and reads one reply line
    starting with `expect`; returns the open sockets. In batches of 256, under
    the agent's listen backlog (512): a Unix connect() with a timeout fails
    with EAGAIN instead of waiting when the backlog is full."""
    opened = []
    while len(opened) < count:
        batch = []
        for index in range(len(opened), min(count, len(opened) + 256)):
            connection = socket.socket(socket.AF_UNIX)
            connection.settimeout(60)
            deadline = time.monotonic() + 30
            while True:
                try:
                    connection.connect(agent.socket_path)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        fail(f"tokend's backlog stayed full for 30 s at connection {index}")
                    time.sleep(0.01)
            connection.sendall(request(index).encode() + b"\n")
            batch.append(connection)
        for connection in batch:
            reply = read_line(connection)
            if reply.startswith("ERR"):  # an ERR line holds no secret
                fail(f"tokend answered {request(0).split()[0]} with {reply.strip()[:200]}")
            if not reply.startswith(expect):
                fail(f"tokend answered {request(0).split()[0]} with a line not starting with {expect!r}")
        opened += batch
    return opened


def await_connections(agent, count):
    """Waits (at most 30 s) until tokend counts exactly `count` client
    connections besides the one asking, as closes are noticed asynchronously."""
    deadline = time.monotonic() + 30
    while True:
        seen = agent.connections() - 1
        if seen == count:
            return
        if time.monotonic() > deadline:
            fail(f"tokend counts {seen} connections, {count} are open")
        time.sleep(0.05)


def settle(agent, seconds):
    """Lets start-up work (NIO threads, freeing the load's memory) finish."""
    time.sleep(seconds)
    if agent.process.poll() is not None:
        fail(f"tokend exited with {agent.process.returncode}")


def measure_start(tokend, config, directory, emit, idle_seconds):
    agent = Agent(tokend, config, directory)
    emit("start_to_ready_s", f"{agent.wait_ready():.3f}")
    emit("ready_vmrss_mib", f"{status_kib(agent.pid, 'VmRSS') / 1024:.1f}")
    emit("ready_vmhwm_mib", f"{status_kib(agent.pid, 'VmHWM') / 1024:.1f}")
    time.sleep(5)
    emit("ready5s_vmrss_mib", f"{status_kib(agent.pid, 'VmRSS') / 1024:.1f}")
    emit("ready5s_vmhwm_mib", f"{status_kib(agent.pid, 'VmHWM') / 1024:.1f}")
    emit("ready5s_threads", str(status_kib(agent.pid, "Threads")))
    measure_idle_cpu(agent, emit, "start_identities", idle_seconds)
    if not agent.request("PING").startswith("OK PONG"):
        fail("no PONG after start")
    agent.stop()


def measure_idle_without_notify(tokend, config, directory, emit, idle_seconds):
    """The same idle agent outside systemd: tells what the periodic STATUS=
    datagram (a summary over every identity) costs."""
    agent = Agent(tokend, config, directory, notify=False)
    agent.wait_answering()
    settle(agent, 5)
    measure_idle_cpu(agent, emit, "start_identities_no_notify", idle_seconds)
    agent.stop()


def measure_idle(tokend, config, directory, emit, idle_seconds, counts):
    agent = Agent(tokend, config, directory)
    agent.wait_ready()
    settle(agent, 2)
    measure_idle_cpu(agent, emit, "no_clients", idle_seconds)
    # One client that sent its requests one after another and stays
    # connected: the socket's thread polls after each reply
    # ([socket] busy_poll_us), and must stop once they stop.
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(30)
        client.connect(agent.socket_path)
        for index in range(1000):
            client.sendall(f"GET idle-{index:06d}\n".encode())
            if not read_line(client).startswith("OK "):
                fail("a GET over one connection was not answered OK")
        settle(agent, 1)
        measure_idle_cpu(agent, emit, "after_requests", idle_seconds)
    # One connection first: what the first client costs once (buffers,
    # handler set-up) is not a per-connection cost.
    agent.request("PING")
    await_connections(agent, 0)
    baseline = status_kib(agent.pid, "VmRSS")
    opened = []
    for count in counts:
        opened += open_connections(agent, count - len(opened), lambda _: "PING", "OK PONG")
        await_connections(agent, count)
        emit(f"idle_conn_{count}_rss_delta_kib", str(status_kib(agent.pid, "VmRSS") - baseline))
        emit(f"idle_conn_{count}_kib_per_conn", f"{(status_kib(agent.pid, 'VmRSS') - baseline) / count:.2f}")
    for connection in opened:
        connection.close()
    agent.stop()


def measure_watch(tokend, config, directory, emit, idle_seconds, watchers, prefix):
    agent = Agent(tokend, config, directory)
    agent.wait_ready()
    settle(agent, 2)
    first = open_connections(agent, 1, lambda _: f"WATCH {prefix}{0:06d}", "OK ")
    baseline = status_kib(agent.pid, "VmRSS")
    opened = open_connections(agent, watchers, lambda i: f"WATCH {prefix}{i % 1000:06d}", "OK ")
    emit(f"watch_{watchers}_rss_delta_kib", str(status_kib(agent.pid, "VmRSS") - baseline))
    emit(f"watch_{watchers}_kib_per_conn", f"{(status_kib(agent.pid, 'VmRSS') - baseline) / watchers:.2f}")
    measure_idle_cpu(agent, emit, f"{watchers}_watchers", idle_seconds)
    # Nothing changed, so nothing may have been pushed.
    for connection in opened + first:
        connection.setblocking(False)
        try:
            if connection.recv(1):
                fail("a WATCH line was pushed while no token changed")
        except BlockingIOError:
            pass
        connection.close()
    agent.stop()


def built_from(tokend):
    """The checkout the binary was built in (its HEAD and the last commit
    that changed Sources/ or Package.swift), which need not be this one."""
    def git(directory, *arguments):
        result = subprocess.run(["git", "-C", directory, *arguments], capture_output=True, text=True)
        return result.returncode, result.stdout.strip()
    status, source = git(os.path.dirname(tokend), "rev-parse", "--show-toplevel")
    if status != 0:
        return "unknown (the binary is outside a git checkout)"
    head = git(source, "rev-parse", "--short", "HEAD")[1]
    sources = git(source, "log", "-1", "--format=%h", "--", "Sources", "Package.swift")[1]
    dirty = git(source, "diff", "--quiet", "HEAD", "--", "Sources", "Package.swift")[0] != 0
    return (f"checkout {source} at {head}, Sources last changed in {sources}"
            + (", with uncommitted changes to Sources" if dirty else ""))


def median_spread(values, digits):
    text = lambda v: f"{v:,.{digits}f}"
    if len(values) == 1:
        return text(values[0])
    return f"{text(statistics.median(values))} ({text(min(values))}–{text(max(values))})"


def table(results, identities, idle_seconds, counts, watchers):
    def column(key):
        return [float(round_results[key]) for round_results in results if key in round_results]

    rows = [
        ("start_to_ready_s", f"exec to READY=1, {identities:,} identities (s)", 2, "< 1.5 s", lambda v: v < 1.5),
        ("ready_vmrss_mib", "VmRSS at READY=1 (MiB)", 1, "< 200 MB (190.7 MiB)", lambda v: v * 1048576 < 200e6),
        ("ready_vmhwm_mib", "VmHWM (peak) at READY=1 (MiB)", 1, "", None),
        ("ready5s_vmrss_mib", "VmRSS 5 s after READY=1 (MiB)", 1, "< 200 MB (190.7 MiB)", lambda v: v * 1048576 < 200e6),
        ("ready5s_vmhwm_mib", "VmHWM 5 s after READY=1 (MiB)", 1, "", None),
        ("ready5s_threads", "threads 5 s after READY=1", 0, "", None),
    ]
    for count in counts:
        rows.append((f"idle_conn_{count}_kib_per_conn", f"RSS per idle connection, {count:,} open (KiB)", 2,
                     "measured, bounded", None))
    rows.append((f"watch_{watchers}_kib_per_conn", f"RSS per WATCH client, {watchers:,} open (KiB)", 2,
                 "measured, bounded", None))
    rows.append(("idle_cpu_ticks_start_identities",
                 f"CPU ticks in {idle_seconds} s idle, {identities:,} identities, no client", 0, "0", lambda v: v == 0))
    rows.append(("idle_cpu_ticks_start_identities_no_notify",
                 f"CPU ticks in {idle_seconds} s idle, {identities:,} identities, no client, no NOTIFY_SOCKET", 0, "0", lambda v: v == 0))
    rows.append(("idle_cpu_ticks_no_clients", f"CPU ticks in {idle_seconds} s idle, 1,000 identities, no client", 0,
                 "0", lambda v: v == 0))
    rows.append(("idle_cpu_ticks_after_requests",
                 f"CPU ticks in {idle_seconds} s idle, 1,000 identities, one client connected after 1,000 GETs", 0,
                 "0", lambda v: v == 0))
    rows.append((f"idle_cpu_ticks_{watchers}_watchers",
                 f"CPU ticks in {idle_seconds} s idle, 1,000 identities, {watchers:,} WATCH clients", 0, "0",
                 lambda v: v == 0))
    idle_cases = [
        ("start_identities", f"{identities:,} identities, no client"),
        ("start_identities_no_notify", f"{identities:,} identities, no client, no NOTIFY_SOCKET"),
        ("no_clients", "1,000 identities, no client"),
        ("after_requests", "1,000 identities, one client connected after 1,000 GETs"),
        (f"{watchers}_watchers", f"1,000 identities, {watchers:,} WATCH clients"),
    ]
    for key, case in idle_cases:
        rows.append((f"idle_cpu_ms_{key}", f"CPU ms in {idle_seconds} s idle, {case}", 3,
                     "under one tick (10 ms)", lambda v: v < 10))
    lines = ["| measurement | median (lowest–highest) | target (#15) | met |", "|---|---|---|---|"]
    for key, name, digits, target, check in rows:
        values = column(key)
        if not values:
            continue
        met = f"{sum(1 for v in values if check(v))} of {len(values)}" if check else "—"
        lines.append(f"| {name} | {median_spread(values, digits)} | {target or '—'} | {met} |")
    return "\n".join(lines)


def print_table(path):
    """The table again from the `round=N key=value` lines of a raw file; the
    settings come from its first line (the command)."""
    rounds, command = {}, ""
    with open(path) as file:
        for line in file:
            if line.startswith("# Benchmarks/agent/run.py"):
                command = line
            if line.startswith("#") or not line.strip():
                continue
            fields = dict(item.split("=", 1) for item in line.split())
            number = int(fields.pop("round"))
            fields.pop("load1", None)
            rounds.setdefault(number, {}).update(fields)
    if not rounds or not command:
        fail(f"{path} holds no agent benchmark run")
    def setting(name, default):
        words = command.split()
        return words[words.index(name) + 1] if name in words else default
    counts = [int(c) for c in setting("--connections", "1000,10000").split(",")]
    print(table([rounds[n] for n in sorted(rounds)], int(setting("--identities", "100000")),
                int(setting("--idle-seconds", "20")), counts, int(setting("--watchers", "1000"))))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokend")
    parser.add_argument("--table", metavar="RAW", help="print the table of a raw results file, measure nothing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=int, default=20)
    parser.add_argument("--connections", default="1000,10000", help="idle connection counts, ascending")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--out", help="raw results file (default Benchmarks/results/agent-<UTC time>.txt)")
    options = parser.parse_args()
    if options.table:
        return print_table(options.table)
    if not options.tokend:
        parser.error("--tokend is required")
    os.umask(0o077)  # the vaults' secrets and the generated tokens
    counts = [int(c) for c in options.connections.split(",")]
    if options.rounds < 1 or options.identities < 1 or options.idle_seconds < 1 or options.watchers < 1 \
            or not counts or counts != sorted(counts) or counts[0] < 1:
        parser.error("rounds, identities, idle seconds, watchers and connection counts must be at least 1 "
                     "(connection counts ascending)")
    tokend = os.path.abspath(options.tokend)
    if not os.access(tokend, os.X_OK):
        fail(f"{tokend} is not an executable")

    # Both this script and tokend (which inherits it) hold one descriptor
    # per connection.
    needed = max(counts[-1], options.watchers) + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
        except (ValueError, OSError) as error:
            fail(f"cannot raise RLIMIT_NOFILE to {needed} (soft {soft}, hard {hard}): {error}; "
                 "run as root or lower --connections")

    out = options.out or datetime.datetime.now(datetime.timezone.utc).strftime(
        "Benchmarks/results/agent-%Y%m%dT%H%M%SZ.txt")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    raw = open(out, "w")

    def note(text):
        raw.write(f"# {text}\n")
        raw.flush()
        print(f"# {text}", file=sys.stderr)

    commit = built_from(tokend)
    models = sorted({line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")})
    version = subprocess.run([tokend, "--version"], capture_output=True, text=True).stdout.strip()
    note(f"Benchmarks/agent/run.py --rounds {options.rounds} --identities {options.identities} "
         f"--idle-seconds {options.idle_seconds} --connections {options.connections} --watchers {options.watchers}")
    note(f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    note(f"uname: {' '.join(os.uname())}")
    note(f"nproc: {os.cpu_count()}")
    note(f"cpu: {', '.join(models)}")
    note(f"tokend commit: {commit} ({version})")
    note(f"tokend binary: {tokend}")
    note(f"RLIMIT_NOFILE: {resource.getrlimit(resource.RLIMIT_NOFILE)}; clock ticks per second: {CLOCK_TICKS}")

    work = tempfile.mkdtemp(prefix="tokend-agentbench.")
    os.chmod(work, 0o700)
    results = []
    try:
        max_connections = max(counts[-1], options.watchers) + 100
        big_config, import_seconds = make_vault(tokend, os.path.join(work, "big"), options.identities, "svc-",
                                                max_connections)
        note(f"vault import of {options.identities} identities: {import_seconds:.1f} s "
             f"(vault file {os.path.getsize(os.path.join(work, 'big', 'vault.db')) / 1048576:.0f} MiB)")
        small_config, _ = make_vault(tokend, os.path.join(work, "small"), 1000, "idle-", max_connections)
        for round_number in range(1, options.rounds + 1):
            note(f"round {round_number} start: load average {open('/proc/loadavg').read().split()[:3]}")
            round_results = {}

            def emit(key, value):
                round_results[key] = value
                load1 = open("/proc/loadavg").read().split()[0]
                line = f"round={round_number} {key}={value} load1={load1}"
                raw.write(line + "\n")
                raw.flush()
                print(line, file=sys.stderr)

            measure_start(tokend, big_config, os.path.join(work, "big"), emit, options.idle_seconds)
            measure_idle_without_notify(tokend, big_config, os.path.join(work, "big"), emit, options.idle_seconds)
            measure_idle(tokend, small_config, os.path.join(work, "small"), emit, options.idle_seconds, counts)
            measure_watch(tokend, small_config, os.path.join(work, "small"), emit, options.idle_seconds,
                          options.watchers, "idle-")
            results.append(round_results)
        note(f"end: load average {open('/proc/loadavg').read().split()[:3]}")
    finally:
        for process in LIVE_AGENTS:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)

    text = table(results, options.identities, options.idle_seconds, counts, options.watchers)
    raw.write("\n# table:\n" + "".join(f"# {line}\n" for line in text.splitlines()))
    raw.close()
    print(text)
    print(f"\nraw runs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
