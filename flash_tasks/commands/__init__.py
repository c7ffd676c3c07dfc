"""The ``flash`` command's subcommands and everything they print.

Nothing in this package changes what a build produces (so it need not be part of
the tool fingerprint, ``quick.tool_fingerprint``: editing the output here need
not make the next build rerun every task).
"""
