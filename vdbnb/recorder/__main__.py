import sys

from vdbnb.recorder.cli import main

sys.exit(main())
