#!/usr/bin/env python3
"""Fleet test (issue 14): three tokend agents -- separate processes, separate
sockets, separate configuration files -- share one PostgreSQL fleet store and
rotate hundreds of refresh tokens against django-oauth-toolkit (rotation and
reuse protection on) while the test disturbs them. Two phases, each with its
own OAuth2 server and a fresh database in one throwaway PostgreSQL 15 cluster:

  exclusion  no reuse grace period, so any second use of a refresh token
             revokes its family. Agents are stopped with SIGTERM and started
             again at random; PostgreSQL is stopped and started once, for less
             than the lease time. While it is down, GET is sent to every agent
             for a sample of identities: each must answer OK (stale=1 allowed)
             at once, never an error or a hang.
  crashes    a grace period longer than the lease; agents are SIGKILLed and
             started again at random, and one is frozen (SIGSTOP) for longer
             than the lease, then resumed (SIGCONT).

In both, WATCH runs on every agent for a sample of identities: when a new token
first appears on one agent, every other agent that is up and not frozen must
serve it (or a newer one) within 1 s (from the moment it came back, for an
agent that was restarted or frozen). At the end of a phase every agent is
stopped, one agent is started alone, and every identity must refresh twice
(its stored refresh token and the one it rotated to were both alive), as
scripts/kill-test.py checks; the provider's own database must also hold a live
refresh token for every family.

Prints `families lost: N` per phase and exits 1 unless every phase loses none
and every check passes. Stdlib only; needs scripts/postgres/start.sh (Debian's
postgresql-15) and scripts/oauth2-server/start.sh (its venv), which it runs
itself.

    python3 scripts/fleet-test.py --tokend .build/debug/tokend
"""
import argparse
import hashlib
import json
import os
import random
import selectors
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PG_BIN = os.environ.get("TOKEND_POSTGRES_BIN", "/usr/lib/postgresql/15/bin")
AGENT_NAMES = ["a", "b", "c"]
LAG_LIMIT = 1.0


def log(message):
    print(f"fleet-test: {message}", flush=True)


def exports(text):
    """The variables of the `export A=B C=D` lines that the start scripts print."""
    values = {}
    for line in text.splitlines():
        if line.startswith("export "):
            for pair in shlex.split(line[len("export "):]):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def private_file(path, content):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(content)


def fingerprint(token):
    # Tokens are kept only as digests: nothing the test prints or keeps can leak one.
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def percentile(values, fraction):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- PostgreSQL ---------------------------------------------------------------

class Cluster:
    """The throwaway cluster of scripts/postgres/start.sh, and its restart."""

    def __init__(self, work):
        out = subprocess.run([os.path.join(HERE, "postgres", "start.sh")], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"fleet-test: scripts/postgres/start.sh failed:\n{out.stderr}")
        self.env = exports(out.stdout)
        self.state = self.env["TOKEND_TEST_POSTGRES_STATE"]
        self.data = os.path.join(self.state, "data")
        self.pgpass = os.path.join(work, "pgpass")
        with open(self.env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]) as handle:
            password = handle.read().strip()
        private_file(self.pgpass, f"127.0.0.1:{self.env['TOKEND_TEST_POSTGRES_PORT']}:*:"
                                  f"{self.env['TOKEND_TEST_POSTGRES_USER']}:{password}\n")

    def sql(self, statement, database=None):
        return subprocess.run(
            [os.path.join(PG_BIN, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", self.env["TOKEND_TEST_POSTGRES_PORT"], "-U", self.env["TOKEND_TEST_POSTGRES_USER"],
             "-d", database or self.env["TOKEND_TEST_POSTGRES_DATABASE"], "-c", statement],
            env={**os.environ, "PGPASSFILE": self.pgpass}, capture_output=True, text=True, check=True).stdout

    def pg_ctl(self, *args):
        command = [os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, *args]
        if os.geteuid() == 0:  # the cluster runs as postgres (initdb refuses root)
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, capture_output=True, text=True, check=True)

    def restart(self, pause):
        """Stops the server (fast: sessions are cut), waits `pause`, starts it with
        the same options. Returns (seconds down, seconds until it accepted again)."""
        with open(os.path.join(self.data, "postmaster.opts")) as handle:
            argv = shlex.split(handle.read())[1:]
        options, skip = [], False
        for arg in argv:  # pg_ctl gives -D itself
            if skip:
                skip = False
            elif arg == "-D":
                skip = True
            else:
                options.append(shlex.quote(arg))
        started = time.monotonic()
        self.pg_ctl("-m", "fast", "-w", "-t", "30", "stop")
        stopped = time.monotonic()
        time.sleep(pause)
        self.pg_ctl("-l", os.path.join(self.data, "server.log"), "-w", "-t", "30", "-o", " ".join(options), "start")
        return stopped - started, time.monotonic() - started

    def stop(self):
        subprocess.run([os.path.join(HERE, "postgres", "stop.sh"), self.state], capture_output=True)


# --- django-oauth-toolkit -------------------------------------------------------

class OAuth2Server:
    def __init__(self, access_seconds, grace_seconds):
        env = {**os.environ, "DOT_ACCESS_TOKEN_SECONDS": str(access_seconds),
               "DOT_REUSE_GRACE_SECONDS": str(grace_seconds)}
        out = subprocess.run([os.path.join(HERE, "oauth2-server", "start.sh")], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"fleet-test: scripts/oauth2-server/start.sh failed:\n{out.stderr}")
        values = exports(out.stdout)
        self.url = values["TOKEND_TEST_OAUTH2_URL"]
        self.pid = int(values["TOKEND_TEST_OAUTH2_PID"])
        self.state = values["TOKEND_TEST_OAUTH2_STATE"]

    def mint(self, count):
        request = urllib.request.Request(f"{self.url}/test/mint?count={count}", method="POST")
        return json.load(urllib.request.urlopen(request, timeout=120))["refresh_tokens"]

    def database(self):
        # Read-only beside the running server (WAL): the provider's own record.
        return sqlite3.connect(f"file:{self.state}/dot.sqlite3?mode=ro", uri=True, timeout=30)

    def families(self, tokens):
        """The token family of each minted refresh token."""
        with self.database() as db:
            rows = dict(db.execute("SELECT token, token_family FROM oauth2_provider_refreshtoken").fetchall())
        return [rows[token] for token in tokens]

    def issued(self):
        with self.database() as db:
            return db.execute("SELECT COUNT(*) FROM oauth2_provider_refreshtoken").fetchone()[0]

    def live_families(self):
        """Family -> refresh tokens not revoked. Rotation revokes the token it
        replaces, reuse detection every token of the family: a family with no
        live token is dead for good."""
        with self.database() as db:
            rows = db.execute("SELECT token_family, COUNT(*) FROM oauth2_provider_refreshtoken "
                              "WHERE revoked IS NULL GROUP BY token_family").fetchall()
        return dict(rows)

    def stop(self, keep):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not keep:
            subprocess.run(["rm", "-rf", self.state])


# --- the agents ---------------------------------------------------------------

def request_line(path, line, timeout):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(line.encode() + b"\n")
        return sock.makefile("rb").readline().decode(errors="replace").rstrip("\n")


class Agent:
    def __init__(self, name, tokend, work, config_text):
        self.name = name
        self.tokend = tokend
        self.socket = os.path.join(work, f"agent-{name}.sock")
        self.config = os.path.join(work, f"agent-{name}.toml")
        self.log_path = os.path.join(work, f"agent-{name}.log")
        with open(self.config, "w") as handle:
            handle.write(config_text.replace("@SOCKET@", self.socket).replace("@NAME@", name))
        self.process = None
        self.frozen = False
        self.starts = 0

    def note(self, text):
        with open(self.log_path, "a") as handle:
            handle.write(f"--- fleet-test: {text} ---\n")

    def start(self, timeout=60):
        self.starts += 1
        self.note(f"start #{self.starts}")
        with open(self.log_path, "a") as log_file:
            # A fresh session, so a stray signal to the test's process group does not reach it.
            self.process = subprocess.Popen(
                [self.tokend, "serve", "--config", self.config], stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=log_file, start_new_session=True)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"agent {self.name} exited with {self.process.returncode} while starting; "
                                   f"see {self.log_path}")
            try:
                if request_line(self.socket, "PING", 1) == "OK PONG":
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"agent {self.name} did not answer PING within {timeout} s")

    @property
    def up(self):
        return self.process is not None and self.process.poll() is None

    def signal(self, sig):
        self.note(f"signal {signal.Signals(sig).name}")
        self.process.send_signal(sig)

    def stop(self, slow=10, timeout=45):
        """SIGTERM; returns 0, or what went wrong: another exit status, a stop
        slower than `slow` seconds, or none within `timeout` (longer than the
        store's 30 s operation timeout, so a stuck database call ends first)."""
        if self.frozen:
            self.resume()
        self.signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return f"still running {timeout} s after SIGTERM (then SIGKILLed)"
        took = time.monotonic() - started
        if code == 0 and took > slow:
            return f"exit 0 but {took:.1f} s after SIGTERM"
        return code

    def kill(self):
        self.signal(signal.SIGKILL)
        self.process.wait()

    def freeze(self):
        self.signal(signal.SIGSTOP)
        self.frozen = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.frozen = False


# --- WATCH on every agent: what each serves, and when ------------------------------

class Watches:
    """One thread reads WATCH streams for the sample identities on every agent,
    stamping each line as it arrives. Blackouts (from a signal the test sends
    until the agent is back) are recorded beside them."""

    def __init__(self, sample):
        self.sample = sample
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.pending = []
        # (agent, identity) -> list of connections: {"first": t, "end": t, "lines": [(t, line)]}
        self.connections = {}
        self.blackouts = {name: [] for name in AGENT_NAMES}  # [start, end or None]
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def attach(self, agent):
        """Opens a WATCH per sample identity on a running agent."""
        opened = []
        for identity in self.sample:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(agent.socket)
            sock.sendall(f"WATCH {identity}\n".encode())
            sock.setblocking(False)
            record = {"first": None, "end": None, "lines": [], "buffer": b""}
            with self.lock:
                self.connections.setdefault((agent.name, identity), []).append(record)
            opened.append((sock, (agent.name, identity, record)))
        with self.lock:
            self.pending.extend(opened)
        os.write(self.wake_w, b"x")

    def blackout(self, agent_name):
        with self.lock:
            self.blackouts[agent_name].append([time.monotonic(), None])

    def back(self, agent_name):
        with self.lock:
            self.blackouts[agent_name][-1][1] = time.monotonic()

    def run(self):
        while self.running:
            for key, _ in self.selector.select(timeout=0.2):
                now = time.monotonic()
                if key.data is None:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    with self.lock:
                        pending, self.pending = self.pending, []
                    for sock, data in pending:
                        self.selector.register(sock, selectors.EVENT_READ, data)
                    continue
                _, _, record = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    record["end"] = now
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                record["buffer"] += chunk
                *lines, record["buffer"] = record["buffer"].split(b"\n")
                for line in lines:
                    self.observe(record, now, line.decode(errors="replace"))

    def observe(self, record, now, line):
        if record["first"] is None:
            record["first"] = now
        fields = line.split()
        if fields[:1] == ["OK"] and len(fields) >= 4:
            record["lines"].append((now, "OK", fingerprint(fields[1])))
        else:
            # Only the code: a message is secret-free, but keep it short.
            record["lines"].append((now, "ERR", " ".join(fields[:2])))

    def close(self):
        self.running = False
        self.thread.join()
        end = time.monotonic()
        for key in list(self.selector.get_map().values()):
            if key.data is not None:
                key.data[2]["end"] = key.data[2]["end"] or end
                key.fileobj.close()
        return end


def available(connections, blackouts, end):
    """Intervals in which an agent's WATCH on one identity was answering and the
    agent was neither stopping nor frozen."""
    spans = []
    for record in connections:
        if record["first"] is None:
            continue
        start, stop = record["first"], record["end"] or end
        pieces = [(start, stop)]
        for b_start, b_end in blackouts:
            b_end = b_end if b_end is not None else end
            cut = []
            for s, e in pieces:
                if b_end <= s or b_start >= e:
                    cut.append((s, e))
                else:
                    if s < b_start:
                        cut.append((s, b_start))
                    if b_end < e:
                        cut.append((b_end, e))
            pieces = cut
        spans.extend(pieces)
    return sorted(spans)


def propagation(watches, end):
    """Lag of every (token, agent): from the token's first appearance on any
    agent (or the moment the agent was back, if later) until the agent serves
    it or a newer one. Returns (lags, violations, notes)."""
    lags, violations = [], []
    notes = {"tokens": 0, "single_agent_tokens": 0, "regressions": 0, "watch_errors": {}, "catchup": []}
    for identity in watches.sample:
        per_agent = {name: watches.connections.get((name, identity), []) for name in AGENT_NAMES}
        first_seen = {}
        for name, records in per_agent.items():
            for record in records:
                for t, kind, value in record["lines"]:
                    if kind == "OK":
                        if value not in first_seen or t < first_seen[value][0]:
                            first_seen[value] = (t, name)
                    elif not value.startswith("ERR shutting_down"):
                        notes["watch_errors"][value] = notes["watch_errors"].get(value, 0) + 1
        order = sorted(first_seen, key=lambda token: first_seen[token][0])
        ordinal = {token: index for index, token in enumerate(order)}
        notes["tokens"] += len(order)
        served = {}
        for name, records in per_agent.items():
            seen = sorted((t, ordinal[v]) for record in records for t, kind, v in record["lines"] if kind == "OK")
            served[name] = seen
            for record in records:
                ords = [ordinal[v] for _, kind, v in record["lines"] if kind == "OK"]
                notes["regressions"] += sum(1 for x, y in zip(ords, ords[1:]) if y < x)
        for token in order:
            agents_serving = {name for name in AGENT_NAMES
                              if any(o == ordinal[token] for _, o in served[name])}
            if len(agents_serving) == 1:
                notes["single_agent_tokens"] += 1
        for token in order:
            t0, origin = first_seen[token]
            k = ordinal[token]
            for name in AGENT_NAMES:
                if name == origin:
                    continue
                spans = available(per_agent[name], watches.blackouts[name], end)
                span = next(((s, e) for s, e in spans if e > t0), None)
                if span is None:
                    continue
                base = max(span[0], t0)
                reached = next((t for t, o in served[name] if o >= k), None)
                if span[0] > t0:
                    # Down or frozen when the token appeared: how long it took
                    # to catch up once back is reported, not held to 1 s.
                    if reached is not None and reached <= span[1]:
                        notes["catchup"].append(max(0.0, reached - base))
                    continue
                if reached is not None and reached <= base:
                    lags.append(0.0)
                elif reached is not None and reached <= span[1]:
                    lags.append(reached - base)
                    if reached - base > LAG_LIMIT:
                        violations.append((identity, name, round(reached - base, 3), "served late", base))
                elif span[1] - base > LAG_LIMIT:
                    violations.append((identity, name, round(span[1] - base, 3), "not served while up", base))
    return lags, violations, notes


# --- GET while the database is down ---------------------------------------------

class OutageProbe:
    """GETs a rotating sample on every running agent, one connection each, until
    stopped: every reply must be OK (stale=1 allowed) within `hang` seconds."""

    def __init__(self, agents, identities, hang=1.0):
        self.agents = [agent for agent in agents if agent.up and not agent.frozen]
        self.identities = identities
        self.hang = hang
        self.latencies, self.failures = [], []
        self.stale = 0
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        files = {}
        for agent in self.agents:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(self.hang)
            sock.connect(agent.socket)
            files[agent.name] = (sock, sock.makefile("rb"))
        index = 0
        while self.running:
            for agent in self.agents:
                identity = self.identities[index % len(self.identities)]
                sock, reader = files[agent.name]
                started = time.monotonic()
                try:
                    sock.sendall(f"GET {identity}\n".encode())
                    reply = reader.readline().decode(errors="replace")
                except OSError as error:
                    self.failures.append((agent.name, identity, f"no reply within {self.hang} s ({error})"))
                    self.running = False
                    break
                self.latencies.append(time.monotonic() - started)
                fields = reply.split()
                if fields[:1] != ["OK"]:
                    self.failures.append((agent.name, identity, " ".join(fields[:3])))
                elif "stale=1" in fields:
                    self.stale += 1
            index += 1
            time.sleep(0.02)  # ~50 rounds a second: probing, not loading the machine
        for sock, reader in files.values():
            reader.close()
            sock.close()

    def stop(self):
        self.running = False
        self.thread.join()


# --- a phase ----------------------------------------------------------------------

def store_rows(cluster, database):
    """Each identity's state and generation as the fleet store holds them
    (plain columns: what the database operator sees)."""
    out = cluster.sql("SELECT name, state, generation FROM identities", database)
    rows = {}
    for line in out.splitlines():
        name, state, generation = line.split("|")
        rows[name] = {"state": state, "generation": int(generation)}
    return rows


def enroll(agent, names, tokens):
    """ENROLL on one agent's socket, pipelined: the refresh tokens travel only
    inside the protocol lines, never in argv or a file. The other agents
    learn of each identity from the store's notifications."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(agent.socket)
        reader = sock.makefile("rb")
        for start in range(0, len(names), 50):
            batch = list(zip(names, tokens))[start:start + 50]
            sock.sendall(b"".join(f"ENROLL {name} provider=dot refresh_token={token}\n".encode()
                                  for name, token in batch))
            for name, _ in batch:
                reply = reader.readline().decode(errors="replace").split()
                if reply[:2] != ["OK", "enrolled"]:
                    raise RuntimeError(f"ENROLL {name} on agent {agent.name}: {' '.join(reply[:3])}")


def agent_config(args, work, database, cluster, oauth2_url, secret):
    env = cluster.env
    if args.pg_transport == "socket":
        where = f'socket = "{env["TOKEND_TEST_POSTGRES_SOCKET"]}"\ntls = "disable"'
    else:
        where = (f'host = "127.0.0.1"\nport = {env["TOKEND_TEST_POSTGRES_PORT"]}\ntls = "verify-full"\n'
                 f'ca_file = "{env["TOKEND_TEST_POSTGRES_CA_FILE"]}"')
    return f"""
[vault]
backend = "postgresql"
key_file = "{work}/fleet.key"
# Read only by `vault migrate`; named so that nothing can touch /var/lib/tokend.
path = "{work}/migrate-source.db"

[vault.postgresql]
{where}
database = "{database}"
user = "{env["TOKEND_TEST_POSTGRES_USER"]}"
password_file = "{env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]}"
lease_seconds = {args.lease_seconds}
held_results = "{work}/held-@NAME@"
application_name = "fleet-test-@NAME@"

[socket]
path = "@SOCKET@"

[refresh]
refresh_at = {args.refresh_at}
rate_limit = 500
# django-oauth-toolkit's runserver answers one request at a time: a deep
# queue there would only turn into timeouts.
max_concurrent = 4

[providers.dot]
kind = "oauth2"
token_endpoint = "{oauth2_url}/o/token/"
client_id = "tokend-refresh"
client_secret_file = "{secret}"
allow_insecure_http = true
rate_limit = 500
# A reply that comes after the agent gave up is lost like a killed agent's
# (no grace in the exclusion phase): wait out a loaded test server.
timeout = 60
"""


def restart_agent(agent, watches, sig, rng, events):
    events["log"].append((time.monotonic(), f"{signal.Signals(sig).name} of agent {agent.name}"))
    watches.blackout(agent.name)
    if sig == signal.SIGTERM:
        code = agent.stop()
        if code != 0:
            events["bad_exits"].append((agent.name, code))
    else:
        agent.kill()
    time.sleep(rng.uniform(0.1, 1.5))
    events["start_seconds"].append(agent.start())
    watches.attach(agent)
    watches.back(agent.name)
    events["log"].append((time.monotonic(), f"restart of agent {agent.name}"))


def storm(args, phase, agents, watches, cluster, rng, identities, report):
    """The disturbances of one phase, one after another, for args.storm_seconds."""
    events = {"restarts": 0, "bad_exits": [], "start_seconds": [], "log": report["events"]}
    started = time.monotonic()
    special_at = started + args.storm_seconds * rng.uniform(0.3, 0.6)
    special_done = False
    while time.monotonic() - started < args.storm_seconds:
        time.sleep(rng.uniform(1.0, 4.0))
        if not special_done and time.monotonic() >= special_at:
            special_done = True
            if phase == "exclusion":
                probe = OutageProbe(agents, identities)
                report["events"].append((time.monotonic(), "PostgreSQL stop"))
                down, total = cluster.restart(args.pg_pause)
                report["events"].append((time.monotonic(), "PostgreSQL start"))
                time.sleep(3.0)  # and while every agent reconnects
                probe.stop()
                report["pg_outage"] = round(total, 2)
                report["pg_stop"] = round(down, 2)
                report["outage_gets"] = len(probe.latencies)
                report["outage_stale"] = probe.stale
                report["outage_get_max_ms"] = round(1000 * max(probe.latencies, default=0), 1)
                report["outage_get_p99_ms"] = round(1000 * percentile(probe.latencies, 0.99), 1)
                report["outage_failures"] = probe.failures
                log(f"{phase}: PostgreSQL down {total:.2f} s (lease {args.lease_seconds} s); "
                    f"{len(probe.latencies)} GETs during it and 3 s after: {len(probe.failures)} failed, "
                    f"{probe.stale} stale, max {report['outage_get_max_ms']} ms")
            else:
                agent = rng.choice(agents)
                frozen_for = args.lease_seconds + rng.uniform(1.5, 3.0)
                watches.blackout(agent.name)
                report["events"].append((time.monotonic(), f"SIGSTOP of agent {agent.name}"))
                agent.freeze()
                time.sleep(frozen_for)
                agent.resume()
                watches.back(agent.name)
                report["events"].append((time.monotonic(), f"SIGCONT of agent {agent.name}"))
                report["frozen"] = f"agent {agent.name} for {frozen_for:.1f} s"
                log(f"{phase}: agent {agent.name} frozen (SIGSTOP) for {frozen_for:.1f} s, then SIGCONT")
            continue
        agent = rng.choice(agents)
        restart_agent(agent, watches, signal.SIGTERM if phase == "exclusion" else signal.SIGKILL, rng, events)
        events["restarts"] += 1
    report["restarts"] = events["restarts"]
    report["bad_exits"] = events["bad_exits"]
    report["start_max_s"] = round(max(events["start_seconds"], default=0), 2)


def final_check(args, agent, cluster, database, oauth2, families, names, report):
    """One agent alone: every identity must refresh twice, as kill-test.py requires."""
    before = store_rows(cluster, database)
    agent.start()
    deadline = time.monotonic() + args.check_seconds
    lost = set(names)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = store_rows(cluster, database)
        lost = {name for name in names
                if now[name]["state"] != "fresh" or now[name]["generation"] < before[name]["generation"] + 2}
        # A family the provider revoked does not come back: wait only for the others.
        if all(now[name]["state"] == "reauth_required" for name in lost):
            break
    code = agent.stop()
    if code != 0:
        report["bad_exits"].append((agent.name, code))
    final = store_rows(cluster, database)
    states = {}
    for row in final.values():
        states[row["state"]] = states.get(row["state"], 0) + 1
    live = oauth2.live_families()
    dead = {name for name, family in zip(names, families) if live.get(family, 0) == 0}
    forked = sum(1 for family in families if live.get(family, 0) > 1)
    report["final_states"] = states
    report["agent_lost"] = sorted(lost)
    report["provider_dead"] = sorted(dead)
    report["forked_families"] = forked
    return lost | dead, final


def run_phase(args, phase, cluster, work, rng):
    log(f"phase {phase}")
    grace = 0 if phase == "exclusion" else args.grace_seconds
    oauth2 = OAuth2Server(args.access_seconds, grace)
    report = {"phase": phase, "grace": grace, "events": []}
    agents, ok = [], False
    database = f"fleet_{phase}"
    phase_work = os.path.join(work, phase)
    os.mkdir(phase_work, 0o700)
    try:
        # Notifications are per database: a fresh one per phase.
        cluster.sql(f"CREATE DATABASE {database}")
        secret = os.path.join(phase_work, "client.secret")
        private_file(secret, "tokend-refresh-secret\n")
        config = agent_config(args, phase_work, database, cluster, oauth2.url, secret)
        agents = [Agent(name, args.tokend, phase_work, config) for name in AGENT_NAMES]

        # The fleet store and its key-encryption key (one file every agent reads).
        init = subprocess.run([args.tokend, "vault", "init", "--config", agents[0].config],
                              capture_output=True, text=True)
        if init.returncode != 0:
            raise RuntimeError(f"tokend vault init --config {agents[0].config} exited {init.returncode}: "
                               f"{init.stderr.strip()}")
        if os.path.exists(os.path.join(phase_work, "migrate-source.db")):
            raise RuntimeError("tokend vault init with backend = postgresql created the SQLite vault at [vault] path")
        tokens = oauth2.mint(args.identities)
        families = oauth2.families(tokens)
        names = [f"fleet-{index:04d}" for index in range(len(tokens))]
        for agent in agents:
            agent.start()
        enroll(agents[0], names, tokens)
        del tokens
        stored = len(store_rows(cluster, database))
        if stored != len(names):
            raise RuntimeError(f"{len(names)} identities enrolled, the fleet database {database} holds {stored}")

        # Every identity's first token, before anything is measured.
        warm = time.monotonic()
        while True:
            rows = store_rows(cluster, database)
            if len(rows) == len(names) and all(row["state"] == "fresh" for row in rows.values()):
                break
            if time.monotonic() - warm > 120:
                raise RuntimeError(f"identities not all fresh 120 s after the agents started: "
                                   f"{sum(1 for row in rows.values() if row['state'] != 'fresh')} are not")
            time.sleep(1)
        log(f"{phase}: {len(names)} identities enrolled and fresh on 3 agents after {time.monotonic() - warm:.0f} s")

        generations = sum(row["generation"] for row in rows.values())
        issued = oauth2.issued()
        sample = rng.sample(names, min(args.sample, len(names)))
        # Agents b and c learned each identity from the store's notifications.
        for agent in agents:
            waiting = time.monotonic()
            for name in sample:
                while not request_line(agent.socket, f"STATUS {name}", 5).startswith("OK state=fresh"):
                    if time.monotonic() - waiting > 30:
                        raise RuntimeError(f"agent {agent.name} does not serve {name} 30 s after it was enrolled: "
                                           f"{request_line(agent.socket, f'STATUS {name}', 5)}")
                    time.sleep(0.2)
        watches = Watches(sample)
        for agent in agents:
            watches.attach(agent)
        started = time.monotonic()
        storm(args, phase, agents, watches, cluster, rng, sample, report)
        end = watches.close()
        elapsed = time.monotonic() - started
        for agent in agents:
            code = agent.stop()
            if code != 0:
                report["bad_exits"].append((agent.name, code))
        rows = store_rows(cluster, database)
        report["committed"] = sum(row["generation"] for row in rows.values()) - generations
        report["provider_refreshes"] = oauth2.issued() - issued
        report["storm_seconds"] = round(elapsed)

        lags, violations, notes = propagation(watches, end)
        report["lag_count"] = len(lags)
        report["lag_max_ms"] = round(1000 * max(lags, default=0), 1)
        report["lag_p99_ms"] = round(1000 * percentile(lags, 0.99), 1)
        report["lag_violations"] = violations
        report.update(notes)

        lost, final = final_check(args, agents[0], cluster, database, oauth2, families, names, report)
        report["families_lost"] = len(lost)

        # Logs: no token seen on a socket may appear in them.
        logs = "".join(open(agent.log_path, errors="replace").read() for agent in agents)
        seen = set()
        for records in watches.connections.values():
            for record in records:
                seen.update(v for _, kind, v in record["lines"] if kind == "OK")
        report["log_lines"] = logs.count("\n")
        report["log_warnings"] = sum(1 for line in logs.splitlines() if "level=warning" in line)
        report["log_errors"] = sum(1 for line in logs.splitlines() if "level=error" in line or "level=critical" in line)
        report["log_conflicts"] = sum(1 for line in logs.splitlines() if "conflict" in line)
        messages = {}
        for line in logs.splitlines():
            if "level=warning" in line or "level=error" in line or "level=critical" in line:
                level = line.split("level=", 1)[1].split()[0]
                message = line.split('msg="', 1)[1].split('"', 1)[0] if 'msg="' in line else line[:80]
                error = line.split('tokend.error="', 1)[1].split('"', 1)[0] if 'tokend.error="' in line else ""
                if "did not answer within" in error:
                    message += " (the database did not answer within the operation timeout)"
                messages[(level, message)] = messages.get((level, message), 0) + 1
        report["log_messages"] = sorted(messages.items(), key=lambda item: -item[1])
        report["tokens_in_logs"] = sum(1 for word in set(logs.split()) if fingerprint(word) in seen
                                       or fingerprint(word.split("=", 1)[-1].strip('"')) in seen)
        ok = print_phase(args, report, lost)
        return ok
    finally:
        for agent in agents:
            if agent.up:
                if agent.frozen:
                    agent.resume()
                agent.process.kill()
                agent.process.wait()
        oauth2.stop(keep=not ok)
        if not ok:
            log(f"{phase}: logs kept in {phase_work} (OAuth2 server state {oauth2.state})")


def print_phase(args, r, lost):
    phase = r["phase"]
    rate = r["committed"] / max(1, r["storm_seconds"])
    log(f"{phase}: {r['storm_seconds']} s storm, {r['restarts']} agent restarts "
        f"({'SIGTERM' if phase == 'exclusion' else 'SIGKILL'}), slowest start {r['start_max_s']} s; "
        f"{r['committed']} refreshes committed ({rate:.1f}/s), {r['provider_refreshes']} answered by the provider "
        f"({max(0, r['provider_refreshes'] - r['committed'])} never committed); reuse grace {r['grace']} s, lease {args.lease_seconds} s")
    log(f"{phase}: propagation over {r['lag_count']} (token, agent) pairs of {r['tokens']} tokens on "
        f"{args.sample} watched identities: max {r['lag_max_ms']} ms, p99 {r['lag_p99_ms']} ms, "
        f"{len(r['lag_violations'])} over {LAG_LIMIT:.0f} s")
    log(f"{phase}: catching up after a restart or SIGCONT ({len(r['catchup'])} pairs, not held to {LAG_LIMIT:.0f} s): "
        f"max {1000 * max(r['catchup'], default=0):.1f} ms, p99 {1000 * percentile(r['catchup'], 0.99):.1f} ms")
    for identity, agent, lag, kind, base in r["lag_violations"][:10]:
        before = [(t, text) for t, text in r["events"] if t <= base]
        context = f"{base - before[-1][0]:.1f} s after the {before[-1][1]}" if before else "before any disturbance"
        log(f"{phase}: late: {identity} on agent {agent}: {kind}, {lag:.3f} s; {context}")
    log(f"{phase}: tokens served by one agent only: {r['single_agent_tokens']}; "
        f"regressions (an older token after a newer one): {r['regressions']}; "
        f"WATCH errors: {r['watch_errors'] or 'none'}")
    log(f"{phase}: agent logs: {r['log_lines']} lines, {r['log_warnings']} warnings, {r['log_errors']} errors, "
        f"{r['log_conflicts']} mention a conflict; tokens in logs: {r['tokens_in_logs']}")
    for (level, message), count in r["log_messages"][:12]:
        log(f"{phase}:   {count} x {level}: {message}")
    log(f"{phase}: final states {r['final_states']}; not refreshed twice by the last agent: {len(r['agent_lost'])}; "
        f"families the provider revoked: {len(r['provider_dead'])}; families with two live tokens: "
        f"{r['forked_families']}")
    for name in sorted(lost)[:10]:
        log(f"{phase}: lost {name}")
    if r["bad_exits"]:
        log(f"{phase}: agents that did not stop cleanly on SIGTERM: {r['bad_exits']}")
    failures = []
    if phase == "exclusion":
        if r.get("outage_failures"):
            failures.append(f"GET failed during the database restart: {r['outage_failures'][:5]}")
        if "pg_outage" not in r:
            failures.append("the storm ended before the database restart")
    elif "frozen" not in r:
        failures.append("the storm ended before the freeze")
    if r["lag_violations"]:
        failures.append(f"{len(r['lag_violations'])} propagations over {LAG_LIMIT:.0f} s")
    if r["bad_exits"]:
        failures.append("agents did not stop cleanly on SIGTERM")
    if r["tokens_in_logs"]:
        failures.append("tokens in the agent logs")
    print(f"families lost: {r['families_lost']} ({phase})", flush=True)
    for failure in failures:
        log(f"{phase}: FAILED: {failure}")
    return r["families_lost"] == 0 and not failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokend", required=True, help="path of the tokend binary")
    parser.add_argument("--identities", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed, to replay a run)")
    parser.add_argument("--phase", choices=["exclusion", "crashes", "both"], default="both")
    parser.add_argument("--storm-seconds", type=float, default=75, help="disturbances per phase")
    parser.add_argument("--access-seconds", type=int, default=20, help="access token lifetime at the provider")
    parser.add_argument("--refresh-at", type=float, default=0.5, help="[refresh] refresh_at of the agents")
    parser.add_argument("--lease-seconds", type=float, default=3)
    parser.add_argument("--grace-seconds", type=int, default=10, help="reuse grace of the crash phase")
    parser.add_argument("--pg-pause", type=float, default=1.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--pg-transport", choices=["socket", "tcp"], default="socket",
                        help="the agents reach PostgreSQL on its Unix socket, or on TCP with TLS verify-full")
    parser.add_argument("--sample", type=int, default=30, help="identities watched on every agent")
    parser.add_argument("--check-seconds", type=float, default=90, help="time for the final two refreshes")
    args = parser.parse_args()
    # Stopped by CI or by hand: still stop the agents, servers and cluster (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.grace_seconds <= args.lease_seconds:
        sys.exit("fleet-test: the crash phase needs a grace period longer than the lease")
    if not os.access(args.tokend, os.X_OK):
        sys.exit(f"fleet-test: {args.tokend} is not an executable")
    args.tokend = os.path.abspath(args.tokend)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    phases = ["exclusion", "crashes"] if args.phase == "both" else [args.phase]
    log(f"{args.identities} identities, 3 agents, phases {','.join(phases)}, {args.storm_seconds:.0f} s each, "
        f"access tokens {args.access_seconds} s, lease {args.lease_seconds} s, seed {seed}")

    work = tempfile.mkdtemp(prefix="tokend-fleet-")
    os.chmod(work, 0o700)
    cluster = Cluster(work)
    started = time.monotonic()
    results = {}
    try:
        for phase in phases:
            try:
                results[phase] = run_phase(args, phase, cluster, work, rng)
            except (RuntimeError, subprocess.CalledProcessError) as error:
                detail = getattr(error, "stderr", "") or ""
                log(f"{phase}: FAILED: {error} {detail.strip()}")
                print(f"families lost: unknown ({phase})", flush=True)
                results[phase] = False
    finally:
        cluster.stop()
    passed = sum(1 for ok in results.values() if ok)
    log(f"{passed} passed, {len(results) - passed} failed in {time.monotonic() - started:.0f} s (seed {seed})")
    if passed != len(results):
        log(f"work directory kept: {work}")
        sys.exit(1)
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
