#!/usr/bin/env python3
"""Writes tokend(1), a roff man page, from the command tree the binary
describes itself (`tokend --experimental-dump-help`, swift-argument-parser's
JSON), so the page cannot drift from `--help`.

    tokend --experimental-dump-help | scripts/help-to-man.py VERSION > tokend.1
"""
import json
import sys


def roff(text):
    """Escapes text for roff: backslashes, and a leading dot or quote."""
    lines = []
    for line in (text or "").replace("\\", "\\e").splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def synopsis_names(argument):
    names = []
    for name in argument.get("names") or []:
        prefix = "--" if name.get("kind") in ("long", "longWithSingleDash") else "-"
        if name.get("kind") == "longWithSingleDash":
            prefix = "-"
        names.append(prefix + name["name"])
    return names


def describe(command, path, out):
    name = " ".join(path)
    out.append(".SS " + roff(name))
    if command.get("abstract"):
        out.append(roff(command["abstract"]))
    if command.get("discussion"):
        out.append(".PP")
        out.append(roff(command["discussion"]))
    for argument in command.get("arguments") or []:
        if argument.get("shouldDisplay") is False:
            continue
        names = synopsis_names(argument)
        value = argument.get("valueName")
        if argument.get("kind") == "positional":
            label = "<" + (value or "value") + ">"
        else:
            label = ", ".join(names) + (" <" + value + ">" if argument.get("kind") == "option" and value else "")
        if label in ("-h, --help", "--version"):
            continue
        out.append(".TP")
        out.append("\\fB" + roff(label) + "\\fR")
        text = argument.get("abstract") or ""
        if argument.get("defaultValue"):
            text += " (default: " + argument["defaultValue"] + ")"
        out.append(roff(text))
    for sub in command.get("subcommands") or []:
        if sub.get("shouldDisplay") is False:
            continue
        describe(sub, path + [sub["commandName"]], out)


def main():
    version = sys.argv[1]
    tree = json.load(sys.stdin)["command"]
    out = [
        '.TH TOKEND 1 "" "tokend ' + roff(version) + '" "User Commands"',
        ".SH NAME",
        "tokend \\- " + roff(tree.get("abstract") or "token agent"),
        ".SH SYNOPSIS",
        "\\fBtokend\\fR \\fIcommand\\fR [\\fIoptions\\fR]",
        ".SH DESCRIPTION",
    ]
    if tree.get("discussion"):
        out.append(roff(tree["discussion"]))
        out.append(".PP")
    out.append(
        "The agent runs as the systemd service tokend.service, started by tokend.socket; "
        "programs in group tokend-clients read tokens with \\fBtokend get\\fR or over the socket "
        "/run/tokend/tokend.sock. This page lists every command and option, generated from "
        "\\fBtokend --help\\fR."
    )
    out.append(".SH COMMANDS")
    for sub in tree.get("subcommands") or []:
        if sub.get("shouldDisplay") is False:
            continue
        describe(sub, ["tokend", sub["commandName"]], out)
    out += [
        ".SH FILES",
        ".TP",
        "/etc/tokend/tokend.toml",
        "The configuration (a conffile).",
        ".TP",
        "/etc/tokend/vault-key.cred",
        "The vault key, sealed with systemd-creds encrypt.",
        ".TP",
        "/var/lib/tokend/vault.db",
        "The encrypted vault.",
        ".TP",
        "/run/tokend/tokend.sock",
        "The socket clients connect to.",
        ".SH SEE ALSO",
        "systemd-creds(1), systemctl(1), /usr/share/doc/tokend/install.md, /usr/share/doc/tokend/README.md",
    ]
    sys.stdout.write("\n".join(out) + "\n")


main()
