"""`python -m mip6bench.net.linkemu`: one relay process (mip6bench.net.linkemu.cli)."""
import sys

from mip6bench.net.linkemu.cli import main

sys.exit(main())
