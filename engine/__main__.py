import sys

from grpo_tui.engine.run import main

sys.exit(main())
