"""The ``taskstream`` command line (console script ``taskstream = streams.cli:main``).

One module per command group: :mod:`~streams.cli.broker`, :mod:`~streams.cli.parts` (run,
processor, delay, view, worker, demo), :mod:`~streams.cli.tasks` (submit, steer, status),
:mod:`~streams.cli.tail`, :mod:`~streams.cli.dlq`, :mod:`~streams.cli.rebuild`,
:mod:`~streams.cli.topics`, :mod:`~streams.cli.batch`, :mod:`~streams.cli.config` and
:mod:`~streams.cli.bench`. Argument converters (argparse ``type=`` callables) live in
:mod:`~streams.cli.args`; the helpers the commands share in :mod:`~streams.cli.broker_address`
(finding the broker), :mod:`~streams.view_client` (the HTTP view) and
:mod:`~streams.cli.render` (readable output).
"""

from streams.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
