"""import not_this"""
import os, sys
try: import json
except ImportError: json = None
from .pkg import (one,
                  two)
x = [i for i in range(300)]
def g():
	import inner
	class K:
		import deeper
