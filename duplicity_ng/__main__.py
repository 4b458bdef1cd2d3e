import sys

from duplicity_ng.cli.main import main

sys.exit(main())
