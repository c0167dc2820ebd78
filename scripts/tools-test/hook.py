#!/usr/bin/env python3
"""A rotation hook command for the tests: appends one line to LOG with its
arguments and what it read on standard input, and whether its environment
or arguments hold the token in TOKEN_FILE (they must not).

Usage: hook.py LOG TOKEN_FILE [sleep=SECONDS]
"""
import os
import sys
import time

log, token_file = sys.argv[1], sys.argv[2]
stdin = sys.stdin.read().strip()
with open(token_file) as f:
    token = f.read().strip()
leaked = any(token in value for value in os.environ.values()) or any(token in a for a in sys.argv)
with open(log, "a") as f:
    f.write("hook stdin=%s file=%s leaked=%s\n" % (stdin, token, leaked))
for arg in sys.argv[3:]:
    if arg.startswith("sleep="):
        time.sleep(float(arg[6:]))
