"""ferrofaas python3 template: one process per request; STDIN in, STDOUT out.
Not for editing: write the function in function/handler.py."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "python-packages"))
sys.path.insert(0, HERE)

from function import handler  # noqa: E402

result = handler.handle(sys.stdin.read())
if result is not None:
    sys.stdout.write(result if isinstance(result, str) else str(result))
