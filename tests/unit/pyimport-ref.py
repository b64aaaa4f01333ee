#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The reference for tests/unit/test-pyimport.c and test-startset-py.c.

  pyimport-ref.py info
      the host's version: "MAJOR MINOR CACHE_TAG STDLIB_DIR"
  pyimport-ref.py pyc LIST | py LIST
      for each path of file LIST (one a line), the imports the interpreter
      executes when it imports the module: the IMPORT_NAME instructions of
      the module's code and of the code objects it holds that are not
      functions' (co_flags without CO_NEWLOCALS: class bodies), each
      "path<TAB>name<TAB>level<TAB>from,from" (the from-list without "*");
      a .pyc is unmarshalled past its 16-byte header, a source compiled.
      A file that does not load or compile: "path<TAB>ERR message".
  pyimport-ref.py compile DIR
      every DIR/*.py compiled to DIR/*.pyc (this interpreter's header)
"""
import dis
import importlib.util
import marshal
import os
import sys
import sysconfig

CO_NEWLOCALS = 0x2


def scan(code, out):
    # EXTENDED_ARG prefixes are part of the next instruction's argument,
    # not instructions between the loads and IMPORT_NAME
    ins = [x for x in dis.get_instructions(code)
           if x.opname != 'EXTENDED_ARG']
    for i, x in enumerate(ins):
        if x.opname != 'IMPORT_NAME':
            continue
        lvl = ins[i - 2].argval if i >= 2 and \
            ins[i - 2].opname == 'LOAD_CONST' else 0
        fl = ins[i - 1].argval if i >= 1 and \
            ins[i - 1].opname == 'LOAD_CONST' else None
        if not isinstance(lvl, int):
            lvl = 0
        fr = ','.join(f for f in (fl or ())
                      if isinstance(f, str) and f != '*')
        out.append((x.argval, lvl, fr))
    for c in code.co_consts:
        if hasattr(c, 'co_flags') and not c.co_flags & CO_NEWLOCALS:
            scan(c, out)


def imports(mode, path):
    with open(path, 'rb') as f:
        data = f.read()
    if mode == 'pyc':
        code = marshal.loads(data[16:])
    else:
        code = compile(data, path, 'exec', dont_inherit=True)
    out = []
    scan(code, out)
    return out


def main():
    mode = sys.argv[1]
    if mode == 'info':
        print(sys.version_info[0], sys.version_info[1],
              sys.implementation.cache_tag,
              sysconfig.get_paths()['stdlib'])
        return
    if mode == 'compile':
        d = sys.argv[2]
        for n in sorted(os.listdir(d)):
            if not n.endswith('.py'):
                continue
            with open(os.path.join(d, n), 'rb') as f:
                src = f.read()
            code = compile(src, n, 'exec', dont_inherit=True)
            with open(os.path.join(d, n + 'c'), 'wb') as f:
                f.write(importlib.util.MAGIC_NUMBER + bytes(12) +
                        marshal.dumps(code))
        return
    with open(sys.argv[2]) as f:
        paths = [line.rstrip('\n') for line in f if line.strip()]
    out = sys.stdout
    for p in paths:
        try:
            found = imports(mode, p)
        except Exception as e:  # a file that does not load: left out
            out.write(f"{p}\tERR {type(e).__name__}\n")
            continue
        for n, lvl, fr in found:
            out.write(f"{p}\t{n}\t{lvl}\t{fr}\n")


if __name__ == '__main__':
    sys.exit(main())
