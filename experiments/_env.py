"""Run an experiment or example file as a script with whatever Python the user has.

    sudo python3 experiments/handover.py --param moves=3
    sudo .venv/bin/python examples/two_mns.py

Imported first by such a file (`if __name__ == "__main__": import _env`): the project's
dependencies live in the virtual environment `make setup` creates (.venv beside this
directory), so under any other interpreter the script is executed again, same arguments,
with that environment's Python. Without the environment it ends in one line that names
the fix. Under the environment's Python it only makes the repository importable.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python")


def _in_venv() -> bool:
    try:
        return os.path.samefile(sys.prefix, VENV)
    except OSError:
        return False


if not _in_venv():
    if not os.path.exists(VENV_PYTHON):
        sys.stderr.write(f"{os.path.basename(sys.argv[0])}: error: the project's environment "
                         f"{VENV} is missing (run `sudo make setup` in {REPO} first)\n")
        raise SystemExit(2)
    # sys.argv[0] is the script's path as given: the new process finds it the same way.
    os.execv(VENV_PYTHON, [VENV_PYTHON, sys.argv[0], *sys.argv[1:]])

if REPO not in sys.path:
    sys.path.insert(1, REPO)
