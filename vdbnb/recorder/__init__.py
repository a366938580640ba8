"""The vdbnb recorder process (``python -m vdbnb.recorder`` / ``vdbnb record``); entry point
:func:`vdbnb.recorder.cli.main`."""


def main(argv=None) -> int:
    from vdbnb.recorder.cli import main as _main

    return _main(argv)
