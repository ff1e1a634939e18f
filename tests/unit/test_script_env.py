"""experiments/_env.py without the project's environment: one line naming the fix."""
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_missing_environment_ends_in_one_line_naming_make_setup(tmp_path):
    (tmp_path / "experiments").mkdir()
    shutil.copy(os.path.join(REPO, "experiments", "_env.py"), tmp_path / "experiments" / "_env.py")
    script = tmp_path / "experiments" / "demo.py"
    script.write_text('if __name__ == "__main__":\n    import _env\nprint("ran")\n')
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "make setup" in proc.stderr and str(tmp_path / ".venv") in proc.stderr


def test_under_the_environment_the_script_runs_in_place(tmp_path):
    (tmp_path / "experiments").mkdir()
    shutil.copy(os.path.join(REPO, "experiments", "_env.py"), tmp_path / "experiments" / "_env.py")
    # A "project environment" that is the running interpreter's own prefix.
    os.symlink(sys.prefix, tmp_path / ".venv")
    script = tmp_path / "experiments" / "demo.py"
    script.write_text('if __name__ == "__main__":\n    import _env, sys\n    print(sys.path[1])\n')
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path)
