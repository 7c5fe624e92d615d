import os
import sys

# The engine is importable on its own: tests import it as the package `walrus` from module_utils.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "plugins", "module_utils"))
