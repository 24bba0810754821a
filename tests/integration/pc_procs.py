"""pc_procs.py -- loopback ports, child processes and polls with a
deadline for the Python integration tests (test_redis_tools.py,
test_protocol_doc.py).

Import it after `sys.dont_write_bytecode = True`, so that running a test
never writes into the source tree.
"""
import importlib
import os
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"


class Failure(Exception):
    """A check failed (the message says which and why)."""


def poll(fn, timeout, what, interval=0.05):
    """Calls fn until it returns something true, and returns that; raises
    Failure after timeout s. A Failure from fn ends it at once; any other
    exception (not up yet, say) is kept for the message."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Failure:
            raise
        except Exception as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise Failure(f"{what}: not within {timeout} s{extra}")
        time.sleep(interval)


def need_module(name, package, test):
    """Imports and returns the module `name` (from Debian's `package`).
    ctest runs "python3", which need not be Debian's (pyenv, a venv): if
    this one lacks the module and /usr/bin/python3 is another, the test
    runs again under that one; else it exits 1 saying what to install."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    deb, flag = "/usr/bin/python3", "PC_PY_REEXEC_" + test
    if (os.path.exists(deb) and os.path.realpath(sys.executable) != os.path.realpath(deb)
            and os.environ.get(flag) != "1"):
        os.environ[flag] = "1"
        print(f"# {sys.executable} has no {name} module: running under {deb}", flush=True)
        os.execv(deb, [deb] + sys.argv)
    print(f"{test}: the Python {name} module is missing (apt-get install {package})",
          file=sys.stderr)
    sys.exit(1)


def free_ports(n, udp_too=False):
    """n distinct loopback ports free for TCP (and UDP too if asked: a node
    gossips on its --listen port over UDP), held until all are chosen."""
    held, ports = [], []
    while len(ports) < n:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((HOST, 0))
        port = t.getsockname()[1]
        held.append(t)
        if udp_too:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind((HOST, port))
            except OSError:
                u.close()
                continue
            held.append(u)
        ports.append(port)
    for s in held:
        s.close()
    return ports


class Proc:
    """A child process with its stdout and stderr in files of workdir
    (NAME.out, NAME.err), stdin /dev/null."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.argv = argv
        self.out = os.path.join(workdir, f"{name}.out")
        self.err = os.path.join(workdir, f"{name}.err")
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.p = subprocess.Popen(argv, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                      cwd=workdir)

    def alive(self):
        return self.p.poll() is None

    def stdout_text(self):
        with open(self.out, "r", errors="replace") as f:
            return f.read()

    def output(self):
        """stdout, then stderr, as text ("" for a file that cannot be read)."""
        text = ""
        for path in (self.out, self.err):
            try:
                with open(path, "r", errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def tail(self, n=25):
        return "\n".join(f"  {self.name}| {l}" for l in self.output().splitlines()[-n:])

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL if it still runs after timeout seconds."""
        if self.p.poll() is not None:
            return
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"# {self.name} still runs {timeout} s after SIGTERM: SIGKILL")
            self.p.kill()
            self.p.wait(10)
