import sys
from thinkmeter.cli import main
sys.exit(main())
