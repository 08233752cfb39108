"""The commands as library functions: one per command of the ``shareddisk`` CLI.

Each takes plain values (device paths, names, node ids), does what the
command does, and returns what it found or changed; the CLI (shareddisk/cli/)
only parses arguments, calls one of these and prints the result.  Tests call
them directly.  The modules are grouped by command group: ``initialize``
(init), ``examine`` (dump, verify), ``resources`` (resource add/remove/
cleanup/list and the record updates under them), ``attrs`` (attr get/set/
unset/list), ``moves`` (resource move/stop/start), ``ops`` (op), ``status``,
``message``, ``serve`` (run), and ``areas`` (opening a command's devices,
the node a command acts as).
"""
