import sys

from fewshot_bench.cli.main import main

sys.exit(main())
