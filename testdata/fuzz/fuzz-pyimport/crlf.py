from .import x
import a, \
  b
