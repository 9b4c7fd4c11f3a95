import sys

from fewshot_bench.cli import main

sys.exit(main())
