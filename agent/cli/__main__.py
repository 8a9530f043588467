import sys

from agent.cli.app import main

sys.exit(main())
