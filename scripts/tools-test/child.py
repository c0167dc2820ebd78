#!/usr/bin/env python3
"""A program run by `tokend exec` and signalled by rotation hooks in the
tests: it appends what happens to it to a log, one line per event.

Usage: child.py LOG SOURCE [OPTION...]
  SOURCE        env:NAME (token from the environment) or file:PATH
  ignore-term   log "term-ignored" on SIGTERM and keep running
  exit=N        exit with status N on SIGTERM (default 0)
  exit-now=N    exit with status N right after starting
  pid-file=P    write this process's pid to P after starting
Log lines: "start PID TOKEN", "hup TOKEN", "usr1", "term", "term-ignored".
The tokens are the tests' own, from a fake provider.
"""
import os
import signal
import sys

log, source, options = sys.argv[1], sys.argv[2], sys.argv[3:]
option = dict(o.split("=", 1) for o in options if "=" in o)


def token():
    if source.startswith("env:"):
        return os.environ.get(source[4:], "")
    with open(source[5:]) as f:
        return f.read().strip()


def note(line):
    with open(log, "a") as f:
        f.write(line + "\n")


def on_hup(*_):
    note("hup " + token())


def on_usr1(*_):
    note("usr1")


def on_term(*_):
    if "ignore-term" in options:
        note("term-ignored")
        return
    note("term")
    sys.exit(int(option.get("exit", "0")))


signal.signal(signal.SIGHUP, on_hup)
signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, on_term)
note("start %d %s" % (os.getpid(), token()))
if "pid-file" in option:
    with open(option["pid-file"] + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(option["pid-file"] + ".tmp", option["pid-file"])
if "exit-now" in option:
    sys.exit(int(option["exit-now"]))
while True:
    signal.pause()
