"""`python -m speechrnn`: the same as the `speechrnn` command.

See speechrnn.cli for the subcommands.
"""

import sys

from speechrnn.cli import main

sys.exit(main())
