"""`dashboard-metrics completion bash|zsh`: completion scripts generated from the parser, so
they always list the commands and flags the program has."""

from __future__ import annotations

import argparse

from dashboard_metrics.cli.parser import PROG, options, subparsers

FUNCTION = "_dashboard_metrics"


def _table(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    table = {"": [*subparsers(parser), "--help", "--version"]}
    for name, sub in subparsers(parser).items():
        table[name] = options(sub)
    return table


def _choices(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Flag (or positional, by command) -> its fixed choices."""
    found: dict[str, list[str]] = {}
    for name, sub in subparsers(parser).items():
        for action in sub._actions:
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                key = action.option_strings[0] if action.option_strings else f"{name}:"
                found[key] = [str(c) for c in action.choices]
    return found


def bash(parser: argparse.ArgumentParser) -> str:
    table = _table(parser)
    cases = "\n".join(
        f'    {name}) opts="{" ".join(flags)}" ;;' for name, flags in table.items() if name
    )
    choices = _choices(parser)
    values = "\n".join(
        f'    {flag}) COMPREPLY=($(compgen -W "{" ".join(v)}" -- "$cur")); return 0 ;;'
        for flag, v in choices.items()
        if flag.startswith("--")
    )
    positionals = "\n".join(
        f'    {flag[:-1]}) opts="$opts {" ".join(v)}" ;;'
        for flag, v in choices.items()
        if flag.endswith(":")
    )
    return f"""# bash completion for {PROG}: eval "$({PROG} completion bash)"
{FUNCTION}() {{
  local cur prev cmd opts
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  cmd="${{COMP_WORDS[1]}}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{" ".join(table[""])}" -- "$cur"))
    return 0
  fi
  case "$prev" in
{values}
  esac
  case "$cmd" in
{cases}
    *) opts="" ;;
  esac
  case "$cmd" in
{positionals}
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  return 0
}}
complete -o default -F {FUNCTION} {PROG}
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    table = _table(parser)
    cases = "\n".join(
        f"    {name}) opts=({' '.join(flags)}) ;;" for name, flags in table.items() if name
    )
    choices = _choices(parser)
    values = "\n".join(
        f"    {flag}) compadd -- {' '.join(v)}; return ;;"
        for flag, v in choices.items()
        if flag.startswith("--")
    )
    positionals = "\n".join(
        f"    {flag[:-1]}) opts+=({' '.join(v)}) ;;"
        for flag, v in choices.items()
        if flag.endswith(":")
    )
    return f"""#compdef {PROG}
# zsh completion for {PROG}: eval "$({PROG} completion zsh)" (after compinit), or save it
# as _{PROG} in a directory of $fpath.
{FUNCTION}() {{
  local -a opts
  if (( CURRENT == 2 )); then
    compadd -- {" ".join(table[""])}
    return
  fi
  case ${{words[CURRENT-1]}} in
{values}
  esac
  case ${{words[2]}} in
{cases}
  esac
  case ${{words[2]}} in
{positionals}
  esac
  compadd -- $opts
}}
if (( $+functions[compdef] )); then
  compdef {FUNCTION} {PROG}
fi
"""


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    return bash(parser) if shell == "bash" else zsh(parser)
